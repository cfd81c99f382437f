//! The Redis backend.
//!
//! Keys (`P` is `store.key_prefix`; `{…}` is a Redis Cluster hash tag, so
//! all keys of one queue live in one slot):
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `P{c:<contact>}:inbox` | stream of sealed events (field `e`) | 30 days after the last append |
//! | `P{c:<contact>}:seen:<dedup>` | string, de-duplication mark | 8 days |
//! | `P{c:<contact>}:session` | string, the sealed session | `flows.session_ttl` after the last write |
//! | `P{c:<contact>}:outbox` | stream of sealed outbound jobs | 30 days after the last append |
//! | `P{c:<contact>}:lease:inbox`, `…:lease:outbox` | string, the lease holder's token | the lease time (deleted on commit or release) |
//! | `P{sys}:inbox`, `P{sys}:seen:<dedup>` | the same, for account-level events | 30 days / 8 days |
//! | `P{quarantine}:inbox`, `P{quarantine}:seen:<sha>` | unreadable signed bodies | 30 days / 8 days |
//! | `Ptimers` | sorted set: contacts by when their session's timeout is due (Unix s) | none: a member leaves when its timer fires or is cancelled |
//! | `Pinbox:ready`, `Poutbox:ready` | sorted sets: contacts with pending entries; the score is a version bumped on every append | none: a member leaves when its queue is drained |
//!
//! `<contact>` is the pseudonymous contact key, never a phone number;
//! `<dedup>` is a keyed hash. The seen-mark and the append happen in one
//! Lua script, so concurrent duplicate deliveries to any number of
//! instances append once.
//!
//! The ready sets live outside the contacts' slots, so they cannot be in
//! the same scripts. Instead: an append bumps the contact's version after
//! writing; a worker reads the version before reading the queue, and
//! removes the contact only if the queue is empty and the version has not
//! moved (one script on the ready set). A message that arrives meanwhile
//! either is seen by the worker or changes the version. A crash between an
//! append and its bump leaves the delivery unacknowledged, and Meta's retry
//! bumps it (duplicates bump too). The outbox mark is bumped before the
//! jobs are written: a spurious mark is harmless, a missing one would
//! strand them.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Appended, Claim, Commit, Committed, DEDUP_TTL, INBOX_TTL, InboxEntry, Lane, Queue, Store,
    StoreError, StoredEntry,
};
use crate::domain::ContactKey;

const APPEND_LUA: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local id = redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return id
end
return false
"#;

/// KEYS: lease, inbox, session, outbox. ARGV: token, session ttl,
/// has session, session, number of acked ids, acked ids…, jobs…
const COMMIT_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[5])
for i = 1, n do redis.call('XDEL', KEYS[2], ARGV[5 + i]) end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
else
  redis.call('DEL', KEYS[3])
end
if #ARGV >= 6 + n then
  for i = 6 + n, #ARGV do redis.call('XADD', KEYS[4], '*', 'e', ARGV[i]) end
  redis.call('EXPIRE', KEYS[4], 2592000)
end
local left = redis.call('XLEN', KEYS[2])
redis.call('DEL', KEYS[1])
return left
"#;

/// KEYS: lease, outbox. ARGV: token, id. Returns 1 done, 0 lease lost.
const SENT_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('XDEL', KEYS[2], ARGV[2])
return 1
"#;

/// KEYS: lease. ARGV: token.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// KEYS: ready set. ARGV: member, version seen at claim.
const UNREADY_LUA: &str = r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

/// The Redis store; cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    append: redis::Script,
    commit: redis::Script,
    sent: redis::Script,
    release: redis::Script,
    unready: redis::Script,
}

/// The entries of an XRANGE reply (field `e` holds the sealed body).
fn entries_of(reply: redis::streams::StreamRangeReply) -> Result<Vec<StoredEntry>, StoreError> {
    reply
        .ids
        .into_iter()
        .map(|sid| match sid.map.get("e") {
            Some(Value::BulkString(b)) => Ok(StoredEntry {
                sealed: b.clone(),
                id: sid.id,
            }),
            _ => Err(StoreError::Corrupt(format!("entry {} has no body", sid.id))),
        })
        .collect()
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects (and keeps reconnecting) to `url`; keys go under `prefix`.
    pub async fn connect(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret()).map_err(|_| {
            StoreError::Unavailable("store.redis_url is not a valid Redis URL".into())
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            append: redis::Script::new(APPEND_LUA),
            commit: redis::Script::new(COMMIT_LUA),
            sent: redis::Script::new(SENT_LUA),
            release: redis::Script::new(RELEASE_LUA),
            unready: redis::Script::new(UNREADY_LUA),
        })
    }

    /// A key in the queue's hash slot: a contact's inbox, outbox, seen
    /// marks, session and leases share `{c:<contact>}`.
    fn key(&self, queue: &Queue, suffix: &str) -> String {
        let slot = match queue {
            Queue::Contact(k) | Queue::Outbox(k) => format!("c:{k}"),
            other => other.name(),
        };
        format!("{}{{{}}}:{}", self.prefix, slot, suffix)
    }

    fn stream_key(&self, queue: &Queue) -> String {
        match queue {
            Queue::Outbox(_) => self.key(queue, "outbox"),
            _ => self.key(queue, "inbox"),
        }
    }

    fn ready_key(&self, lane: Lane) -> String {
        format!("{}{}:ready", self.prefix, lane.name())
    }

    fn timers_key(&self) -> String {
        format!("{}timers", self.prefix)
    }

    fn lease_key(&self, lane: Lane, contact: &ContactKey) -> String {
        self.key(
            &Queue::Contact(contact.clone()),
            &format!("lease:{}", lane.name()),
        )
    }

    async fn unready(
        &self,
        lane: Lane,
        contact: &ContactKey,
        version: &Option<String>,
    ) -> Result<(), StoreError> {
        let Some(v) = version else { return Ok(()) };
        let mut conn = self.conn.clone();
        let _: i64 = self
            .unready
            .key(self.ready_key(lane))
            .arg(contact.as_str())
            .arg(v)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn run_append(&self, entries: &[InboxEntry]) -> Result<Vec<Value>, RedisError> {
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("EVALSHA")
                .arg(self.append.get_hash())
                .arg(2)
                .arg(self.key(&e.queue, &format!("seen:{}", e.dedup)))
                .arg(self.stream_key(&e.queue))
                .arg(DEDUP_TTL.as_secs())
                .arg(&e.sealed[..])
                .arg(INBOX_TTL.as_secs());
        }
        // After the appends, so that a worker that saw an empty inbox sees
        // the version change too (duplicates bump it as well: harmless).
        let mut marked = std::collections::HashSet::new();
        for e in entries {
            if let Queue::Contact(k) = &e.queue
                && marked.insert(k.as_str())
            {
                pipe.cmd("ZINCRBY")
                    .arg(self.ready_key(Lane::Inbox))
                    .arg(1)
                    .arg(k.as_str())
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let values = match self.run_append(&entries).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut conn = self.conn.clone();
                self.append
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                self.run_append(&entries).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        if values.len() != entries.len() {
            return Err(StoreError::Corrupt(format!(
                "expected {} replies, got {}",
                entries.len(),
                values.len()
            )));
        }
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::Nil => Appended::Duplicate,
                _ => Appended::New,
            })
            .collect())
    }

    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.stream_key(queue))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        entries_of(reply)
    }

    async fn ready_contacts(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let mut conn = self.conn.clone();
        let stop = limit.saturating_sub(1) as i64;
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.ready_key(lane))
            .arg(0)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| ContactKey::parse(m))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError> {
        let mut conn = self.conn.clone();
        let got: Option<String> = redis::cmd("SET")
            .arg(self.lease_key(lane, contact))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if got.is_none() {
            return Ok(None);
        }
        // One round trip, executed in order: the version first, so that
        // anything appended after this read bumps it.
        let queue = match lane {
            Lane::Inbox => Queue::Contact(contact.clone()),
            Lane::Outbox => Queue::Outbox(contact.clone()),
        };
        let (version, range, session): (
            Option<String>,
            redis::streams::StreamRangeReply,
            Option<Vec<u8>>,
        ) = redis::pipe()
            .cmd("ZSCORE")
            .arg(self.ready_key(lane))
            .arg(contact.as_str())
            .cmd("XRANGE")
            .arg(self.stream_key(&queue))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .cmd("GET")
            .arg(self.key(&queue, "session"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let entries = entries_of(range)?;
        let session = if lane == Lane::Inbox { session } else { None };
        Ok(Some(Claim {
            lane,
            contact: contact.clone(),
            owner: owner.to_owned(),
            version,
            entries,
            session,
        }))
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let mut conn = self.conn.clone();
        let inbox = Queue::Contact(claim.contact.clone());
        if !commit.outbox.is_empty() {
            // Before the jobs exist: a spurious mark is harmless, a missing
            // one would strand them.
            let _: f64 = redis::cmd("ZINCRBY")
                .arg(self.ready_key(Lane::Outbox))
                .arg(1)
                .arg(claim.contact.as_str())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        let mut inv = self.commit.prepare_invoke();
        inv.key(self.lease_key(Lane::Inbox, &claim.contact))
            .key(self.key(&inbox, "inbox"))
            .key(self.key(&inbox, "session"))
            .key(self.key(&inbox, "outbox"))
            .arg(&claim.owner)
            .arg(commit.session_ttl.as_secs().max(1))
            .arg(if commit.session.is_some() { "1" } else { "0" })
            .arg(commit.session.as_deref().unwrap_or(b""))
            .arg(commit.acked.len());
        for id in &commit.acked {
            inv.arg(id);
        }
        for job in &commit.outbox {
            inv.arg(&job[..]);
        }
        if let Some(at) = commit.wake_at {
            // Before the session exists: a spurious timer only wakes a
            // worker that finds nothing due.
            let _: i64 = redis::cmd("ZADD")
                .arg(self.timers_key())
                .arg(at)
                .arg(claim.contact.as_str())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        let left: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if left < 0 {
            return Ok(Committed::LeaseLost);
        }
        if commit.wake_at.is_none() {
            let _: i64 = redis::cmd("ZREM")
                .arg(self.timers_key())
                .arg(claim.contact.as_str())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        if left == 0 {
            self.unready(Lane::Inbox, &claim.contact, &claim.version)
                .await?;
        }
        Ok(Committed::Done {
            inbox_left: left as u64,
        })
    }

    async fn due_timers(&self, now: u64, limit: usize) -> Result<Vec<ContactKey>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.timers_key())
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| ContactKey::parse(m))
            .collect())
    }

    async fn sent(&self, claim: &Claim, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let ok: i64 = self
            .sent
            .key(self.lease_key(Lane::Outbox, &claim.contact))
            .key(self.stream_key(&Queue::Outbox(claim.contact.clone())))
            .arg(&claim.owner)
            .arg(id)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(ok == 1)
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if claim.lane == Lane::Outbox {
            let left: u64 = redis::cmd("XLEN")
                .arg(self.stream_key(&Queue::Outbox(claim.contact.clone())))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if left == 0 {
                self.unready(Lane::Outbox, &claim.contact, &claim.version)
                    .await?;
            }
        }
        let _: i64 = self
            .release
            .key(self.lease_key(claim.lane, &claim.contact))
            .arg(&claim.owner)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
