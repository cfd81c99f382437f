//! One connection type for the Redis store: a single node (through a
//! reconnecting [`ConnectionManager`]) or a Redis Cluster (through the
//! redis crate's cluster client, which follows the slot map, `MOVED` and
//! `ASK`).
//!
//! Every script and every transaction of the store touches one slot (the
//! key layout's hash tags see to it), so they go to one node as they are.
//! A plain pipeline may mix slots (one `GET` per contact, say): on a
//! cluster it is split by slot, each part goes to its node at the same
//! time, in its order, and the answers are put back in the pipeline's
//! order.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

/// TLS settings that trust the CA certificates in `pem` (from
/// `store.redis_ca_file`) instead of the system's roots; no client
/// certificate.
pub fn trusting(pem: Vec<u8>) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }
}

/// Why a TLS client could not be made (a CA file that is not PEM, or a
/// URL that is not `rediss://`), in words that name the settings.
pub fn tls_error(e: redis::RedisError) -> super::StoreError {
    super::StoreError::Unavailable(format!(
        "store.redis_ca_file or store.redis_url: cannot set up TLS ({e})"
    ))
}

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(by_slot(c, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The slot of a command's first key, when it has one: the argument after
/// the name, or for a script the first of its keys.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|a| match a {
            Arg::Simple(bytes) => bytes,
            _ => b"".as_slice(),
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.get(3)?
        }
        b"PING" | b"SCRIPT" | b"INFO" | b"TIME" => return None,
        _ => args.get(1)?,
    };
    Some(Slot::for_key(key))
}

/// Sends `pipeline` to a cluster: whole when it is a transaction or its
/// commands share a slot, else split by slot.
async fn by_slot(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> redis::RedisResult<Vec<Value>> {
    if pipeline.is_transaction() {
        return conn.req_packed_commands(pipeline, offset, count).await;
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut of_slot: HashMap<Option<Slot>, usize> = HashMap::new();
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    for (i, cmd) in cmds.iter().enumerate() {
        let g = *of_slot.entry(slot_of(cmd)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    if groups.len() <= 1 {
        return conn.req_packed_commands(pipeline, offset, count).await;
    }
    let parts = groups.iter().map(|members| {
        let mut part = redis::pipe();
        for &i in members {
            part.add_command(cmds[i].clone());
        }
        let mut conn = conn.clone();
        async move { conn.req_packed_commands(&part, 0, part.len()).await }
    });
    let answers = try_join_all(parts).await?;
    let mut out = vec![Value::Nil; cmds.len()];
    for (members, values) in groups.iter().zip(answers) {
        for (&i, v) in members.iter().zip(values) {
            out[i] = v;
        }
    }
    Ok(out.into_iter().skip(offset).take(count).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_grouped_by_their_first_key_s_slot() {
        let a = Slot::for_key("P{s:1}:c:x:key");
        assert_eq!(slot_of(redis::cmd("GET").arg("P{s:1}:c:x:key")), Some(a));
        assert_eq!(
            slot_of(
                redis::cmd("EVALSHA")
                    .arg("abc")
                    .arg(2)
                    .arg("P{s:1}:lease")
                    .arg("P{s:2}:other")
            ),
            Some(a)
        );
        assert_eq!(slot_of(redis::cmd("EVALSHA").arg("abc").arg(0)), None);
        assert_eq!(slot_of(&redis::cmd("PING")), None);
        assert_ne!(Some(a), slot_of(redis::cmd("GET").arg("P{s:2}:c:x:key")));
    }
}
