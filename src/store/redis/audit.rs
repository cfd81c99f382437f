//! The audit log on Redis, newest first, in runs, and its request index
//! (the keys are listed in the module docs of the backend).

use redis::Value;

use super::scripts::{AuditArgs, AuditKeys, Keys, LapseArgs, LapseKeys, ResetArgs, ResetKeys};
use super::*;
use super::{MAX_COUNT, RedisStore, json, unavailable};

use crate::domain::audit::Entry;

use crate::store::AuditStore;
use crate::store::StoreError;
use crate::store::audit_index::{self, CLOSED_KEEP, Requests};

#[async_trait]
impl AuditStore for RedisStore {
    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let mut conn = self.conn.clone();
        let (seq, hash): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}{{audit}}:head", self.prefix))
            .arg("seq")
            .arg("hash")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match (seq, hash) {
            (Some(seq), Some(hash)) => (seq, hash),
            _ => (0, crate::domain::audit::GENESIS.to_owned()),
        })
    }

    async fn audit_append(&self, entry: &crate::domain::audit::Entry) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .audit_invocation(entry)?
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError> {
        self.audit_newest_first(before, limit).await
    }

    async fn audit_append_run(
        &self,
        entries: &[crate::domain::audit::Entry],
    ) -> Result<bool, StoreError> {
        self.audit_run(entries).await
    }

    async fn audit_requests(&self) -> Result<crate::store::audit_index::Requests, StoreError> {
        self.audit_request_index().await
    }

    async fn audit_request_lapsed(
        &self,
        request: &crate::domain::audit::Entry,
    ) -> Result<bool, StoreError> {
        self.audit_lapse(request).await
    }

    async fn audit_requests_reset(
        &self,
        through: u64,
        index: &crate::store::audit_index::Replay,
    ) -> Result<bool, StoreError> {
        self.audit_reset(through, index).await
    }

    async fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError> {
        self.audit_range("XRANGE", &format!("{from}-0"), "+", limit)
            .await
    }
}

/// `lua/lapse.lua`: its header states its KEYS and ARGV.
pub(super) const LAPSE_LUA: &str = include_str!("lua/lapse.lua");

/// `lua/reset.lua`: its header states its KEYS and ARGV.
pub(super) const RESET_LUA: &str = include_str!("lua/reset.lua");

/// How many appends one pipeline of [`RedisStore::audit_run`] carries.
const RUN_CHUNK: usize = 2000;

/// The head's seq and `indexed_from`.
type Marks = (Option<u64>, Option<u64>);

fn entry_of(bytes: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedisStore {
    fn audit_key(&self, suffix: &str) -> String {
        format!("{}{{audit}}:{suffix}", self.prefix)
    }

    /// The append script's call for `entry`, with its request op.
    pub(super) fn audit_invocation(
        &self,
        entry: &Entry,
    ) -> Result<redis::ScriptInvocation<'_>, StoreError> {
        let (op, group) =
            audit_index::op_of(entry).map_or(("", String::new()), |(op, g)| (op.tag(), g));
        let keys = AuditKeys {
            head: self.audit_key("head"),
            log: self.audit_key("log"),
            requests: self.audit_key("requests"),
            closed: self.audit_key("requests:closed"),
        };
        let args = AuditArgs {
            seq: entry.seq,
            prev: &entry.prev,
            hash: &entry.hash,
            entry: json(entry)?,
            op,
            group,
            closed_keep: CLOSED_KEEP,
        };
        let mut inv = self.audit.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        Ok(inv)
    }

    /// Up to `limit` entries below `before`, newest first (XREVRANGE).
    pub(super) async fn audit_newest_first(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let end = match before {
            None => "+".to_owned(),
            Some(0 | 1) => return Ok(Vec::new()),
            // Ids are `<seq>-1`: below `<before>-0` is at most `<before - 1>-1`.
            Some(b) => format!("({b}-0"),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.audit_range("XREVRANGE", &end, "-", limit).await
    }

    /// The log's entries between `start` and `end` (`XRANGE` oldest first,
    /// `XREVRANGE` newest first), at most `limit`.
    async fn audit_range(
        &self,
        command: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd(command)
            .arg(self.audit_key("log"))
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(limit.min(MAX_COUNT))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        reply
            .ids
            .iter()
            .map(|sid| match sid.map.get("a") {
                Some(Value::BulkString(b)) => entry_of(b),
                _ => Err(StoreError::Corrupt(format!(
                    "audit entry {} is empty",
                    sid.id
                ))),
            })
            .collect()
    }

    /// Appends `entries` with one pipeline of append scripts per chunk.
    pub(super) async fn audit_run(&self, entries: &[Entry]) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.audit
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for chunk in entries.chunks(RUN_CHUNK) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.invoke_script(&self.audit_invocation(e)?);
            }
            let done: Vec<i64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            if done.iter().any(|d| *d != 1) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The request index: the open groups, and the closed entries.
    pub(super) async fn audit_request_index(&self) -> Result<Requests, StoreError> {
        let mut conn = self.conn.clone();
        let (marks, groups, closed): (Marks, Vec<String>, Vec<Vec<u8>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.audit_key("head"))
            .arg("seq")
            .arg("indexed_from")
            .cmd("HVALS")
            .arg(self.audit_key("requests"))
            .cmd("ZRANGE")
            .arg(self.audit_key("requests:closed"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut open = Vec::new();
        for g in &groups {
            for line in g.lines() {
                // `<op> <seq> <json>`
                let json = line.splitn(3, ' ').nth(2).unwrap_or_default();
                open.push(entry_of(json.as_bytes())?);
            }
        }
        open.sort_by_key(|e| e.seq);
        let closed = closed
            .iter()
            .map(|b| entry_of(b))
            .collect::<Result<Vec<Entry>, StoreError>>()?;
        let complete = match marks {
            (None | Some(0), _) => true,
            (_, from) => from == Some(1),
        };
        Ok(Requests {
            open,
            closed,
            complete,
        })
    }

    pub(super) async fn audit_reset(
        &self,
        through: u64,
        index: &audit_index::Replay,
    ) -> Result<bool, StoreError> {
        let keys = ResetKeys {
            head: self.audit_key("head"),
            requests: self.audit_key("requests"),
            closed: self.audit_key("requests:closed"),
        };
        let mut groups = Vec::with_capacity(index.open.len());
        for (group, members) in &index.open {
            let lines = members
                .iter()
                .map(|(op, e)| Ok(format!("{} {} {}", op.tag(), e.seq, json(e)?)))
                .collect::<Result<Vec<String>, StoreError>>()?;
            groups.push((group.clone(), lines.join("\n")));
        }
        let closed = index
            .closed
            .iter()
            .map(|(seq, e)| Ok((*seq, json(e)?)))
            .collect::<Result<Vec<(u64, String)>, StoreError>>()?;
        let args = ResetArgs {
            through,
            groups,
            closed,
        };
        let mut inv = self.audit_reset.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(done == 1)
    }

    pub(super) async fn audit_lapse(&self, request: &Entry) -> Result<bool, StoreError> {
        let Some((_, group)) = audit_index::op_of(request) else {
            return Ok(false);
        };
        let keys = LapseKeys {
            requests: self.audit_key("requests"),
            closed: self.audit_key("requests:closed"),
        };
        let args = LapseArgs {
            group: &group,
            seq: request.seq,
            closed_keep: CLOSED_KEEP,
        };
        let mut inv = self.audit_lapse.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let moved: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(moved == 1)
    }
}
