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
//! | `P{c:<contact>}:outbox:head` | string, the retry state of the outbox's first job | until that job is finished |
//! | `Poutbox:due` | sorted set: contacts whose outbox waits (backoff, rate limit, paused number) by when to try again | none: a member leaves when its outbox is released |
//! | `P{c:<contact>}:deliveries` | hash: job id → `RR\|{json}` delivery record (rank, state, code; never content), and `w:<wamid hash>` → job id | 30 days after the last write |
//! | `P{c:<contact>}:dead` | stream of sealed dead letters (the job and its last error) | 30 days after the last one |
//! | `Pdead` | sorted set: contacts with dead letters, by the time of the last one | none: operators clear it |
//! | `P{c:<contact>}:consent` | stream: the consent ledger (JSON entries: purpose, granted, time, source, policy version; no message content) | kept: it is the evidence of consent |
//! | `P{c:<contact>}:window` | hash: business phone_number_id → the customer's last message time (Unix s) | 2 days after the last write |
//! | `Prate:<name>` | string, a GCRA rate limit's theoretical arrival time (Unix µs) | just past it |
//! | `Pbreakers`, `Pbreakers:probe` | hashes: phone_number_id → why its sending is paused (JSON), and when the next probe may go | none: a field leaves when the breaker closes |
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
//! jobs are written (a crash then leaves a spurious mark, which is
//! harmless; a missing one would strand them) and again after (a sender
//! that saw the first bump but not yet the jobs cannot drop the mark).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Appended, Breaker, Claim, Commit, Committed, ConsentChange, DEDUP_TTL, DeadLetter, Delivery,
    Finish, INBOX_TTL, InboxEntry, Lane, Queue, Store, StoreError, StoredEntry,
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

/// Merges a delivery record into the hash `key` (see [`Delivery::merge`]):
/// the stored value is `RR|{json}` with a two-digit rank; a lower or equal
/// rank, or anything after a final state (rank 10), changes nothing. A
/// record with no job id is matched through its wamid hash.
const MERGE_LUA: &str = r#"
local function merge(key, job, wamid, rank, json)
  if job == '' then
    if wamid == '' then return 0 end
    job = redis.call('HGET', key, 'w:' .. wamid)
    if not job then return 0 end
  end
  local cur = redis.call('HGET', key, job)
  rank = tonumber(rank)
  if cur then
    local r = tonumber(string.sub(cur, 1, 2))
    if r >= 10 or r >= rank then return 0 end
    local old = cjson.decode(string.sub(cur, 4))
    for k, v in pairs(cjson.decode(json)) do old[k] = v end
    old['job'] = job
    json = cjson.encode(old)
  end
  redis.call('HSET', key, job, string.format('%02d', rank) .. '|' .. json)
  if wamid ~= '' then redis.call('HSET', key, 'w:' .. wamid, job) end
  redis.call('EXPIRE', key, 2592000)
  return 1
end
"#;

/// KEYS: lease, inbox, session, outbox, window, deliveries, consent.
/// ARGV: token, session ttl, has session, session, number of acked ids,
/// number of jobs, window number, window time, number of deliveries,
/// number of consent entries, then the acked ids, the jobs, four values
/// per delivery (job, wamid, rank, json), and the consent entries (json).
const COMMIT_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n, j, d, c = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9]), tonumber(ARGV[10])
local at = 11
for i = 1, n do redis.call('XDEL', KEYS[2], ARGV[at + i - 1]) end
at = at + n
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
else
  redis.call('DEL', KEYS[3])
end
if j > 0 then
  for i = 0, j - 1 do redis.call('XADD', KEYS[4], '*', 'e', ARGV[at + i]) end
  redis.call('EXPIRE', KEYS[4], 2592000)
end
at = at + j
if ARGV[7] ~= '' then
  local cur = tonumber(redis.call('HGET', KEYS[5], ARGV[7]) or '0')
  if tonumber(ARGV[8]) > cur then redis.call('HSET', KEYS[5], ARGV[7], ARGV[8]) end
  redis.call('EXPIRE', KEYS[5], 172800)
end
for i = 0, d - 1 do
  local b = at + 4 * i
  merge(KEYS[6], ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
end
at = at + 4 * d
for i = 0, c - 1 do redis.call('XADD', KEYS[7], '*', 'c', ARGV[at + i]) end
local left = redis.call('XLEN', KEYS[2])
redis.call('DEL', KEYS[1])
return left
"#;

/// KEYS: lease, outbox, head, deliveries, dead, dead index, consent.
/// ARGV: token, entry id, job, wamid hash, rank, json, dead letter (or
/// empty), now, contact, consent entry (or empty). Returns 1 if the lease
/// is still held, else 0; the job is finished either way.
const FINISH_LUA: &str = r#"
if ARGV[10] ~= '' then redis.call('XADD', KEYS[7], '*', 'c', ARGV[10]) end
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
merge(KEYS[4], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[5], '*', 'e', ARGV[7])
  redis.call('EXPIRE', KEYS[5], 2592000)
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[9])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"#;

/// KEYS: lease, head. ARGV: token, has head, head. Returns 1, or 0 when
/// the lease was lost (nothing written).
const DEFER_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', 2592000) end
redis.call('DEL', KEYS[1])
return 1
"#;

/// KEYS: rate key. ARGV: interval (µs), burst. GCRA on the server's
/// clock (µs), so instances with skewed clocks agree. Answers the wait in
/// ms (rounded up), 0 when a slot was taken.
const RATE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local over = tat - now - (burst - 1) * interval
if over > 0 then return math.ceil(over / 1000) end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.floor((tat + interval - now) / 1000) + 1000)
return 0
"#;

/// KEYS: rate key. ARGV: hold (ms).
const HOLD_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1]) * 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > tat then
  redis.call('SET', KEYS[1], string.format('%.0f', until_), 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"#;

/// KEYS: probe hash. ARGV: number, now, next. 1 when this caller probes.
const PROBE_LUA: &str = r#"
local p = redis.call('HGET', KEYS[1], ARGV[1])
if not p then return 0 end
if tonumber(p) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
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
    finish: redis::Script,
    defer: redis::Script,
    release: redis::Script,
    unready: redis::Script,
    rate: redis::Script,
    hold: redis::Script,
    probe: redis::Script,
}

/// A delivery record as stored: `RR|{json}`.
fn record_of(value: &[u8]) -> Option<Delivery> {
    serde_json::from_slice(value.get(3..)?).ok()
}

/// The four script arguments of a record (job, wamid, rank, json).
fn record_args(d: &Delivery) -> Result<[String; 4], StoreError> {
    Ok([
        d.job.clone(),
        d.wamid.clone().unwrap_or_default(),
        d.state.rank().to_string(),
        serde_json::to_string(d).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    ])
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
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            append: redis::Script::new(APPEND_LUA),
            commit: redis::Script::new(&format!("{MERGE_LUA}{COMMIT_LUA}")),
            finish: redis::Script::new(&format!("{MERGE_LUA}{FINISH_LUA}")),
            defer: redis::Script::new(DEFER_LUA),
            release: redis::Script::new(RELEASE_LUA),
            unready: redis::Script::new(UNREADY_LUA),
            rate: redis::Script::new(RATE_LUA),
            hold: redis::Script::new(HOLD_LUA),
            probe: redis::Script::new(PROBE_LUA),
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

    fn timers_key(&self, lane: Lane) -> String {
        match lane {
            Lane::Inbox => format!("{}timers", self.prefix),
            Lane::Outbox => format!("{}outbox:due", self.prefix),
        }
    }

    fn contact_key(&self, contact: &ContactKey, suffix: &str) -> String {
        self.key(&Queue::Contact(contact.clone()), suffix)
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
        // A random sample, not the lowest scores: the score is a version
        // that grows with every message, so taking the lowest would starve
        // busy contacts, and every instance would queue on the same few.
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANDMEMBER")
            .arg(self.ready_key(lane))
            .arg(limit)
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
            .arg(match lane {
                Lane::Inbox => self.contact_key(contact, "session"),
                Lane::Outbox => self.contact_key(contact, "outbox:head"),
            })
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let entries = entries_of(range)?;
        let (session, head) = match lane {
            Lane::Inbox => (session, None),
            Lane::Outbox => (None, session),
        };
        Ok(Some(Claim {
            lane,
            contact: contact.clone(),
            owner: owner.to_owned(),
            version,
            entries,
            session,
            head,
        }))
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let mut conn = self.conn.clone();
        let inbox = Queue::Contact(claim.contact.clone());
        let mut inv = self.commit.prepare_invoke();
        let (window_number, window_at) = commit.window.clone().unwrap_or_default();
        inv.key(self.lease_key(Lane::Inbox, &claim.contact))
            .key(self.key(&inbox, "inbox"))
            .key(self.key(&inbox, "session"))
            .key(self.key(&inbox, "outbox"))
            .key(self.key(&inbox, "window"))
            .key(self.key(&inbox, "deliveries"))
            .key(self.key(&inbox, "consent"))
            .arg(&claim.owner)
            .arg(commit.session_ttl.as_secs().max(1))
            .arg(if commit.session.is_some() { "1" } else { "0" })
            .arg(commit.session.as_deref().unwrap_or(b""))
            .arg(commit.acked.len())
            .arg(commit.outbox.len())
            .arg(window_number)
            .arg(window_at)
            .arg(commit.deliveries.len())
            .arg(commit.consent.len());
        for id in &commit.acked {
            inv.arg(id);
        }
        for job in &commit.outbox {
            inv.arg(&job[..]);
        }
        for d in &commit.deliveries {
            for a in record_args(d)? {
                inv.arg(a);
            }
        }
        for c in &commit.consent {
            inv.arg(serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        // One round trip, executed in this order. The outbox is marked
        // ready before the jobs exist (a crash then leaves a spurious mark,
        // which is harmless; a missing one would strand them) and again
        // after (a sender that saw the first bump but not yet the jobs
        // cannot drop the mark). The timer is set before the session exists
        // (a spurious timer only wakes a worker that finds nothing due).
        let jobs = !commit.outbox.is_empty();
        let build = || {
            let mut pipe = redis::pipe();
            if jobs {
                pipe.cmd("ZINCRBY")
                    .arg(self.ready_key(Lane::Outbox))
                    .arg(1)
                    .arg(claim.contact.as_str())
                    .ignore();
            }
            if let Some(at) = commit.wake_at {
                pipe.cmd("ZADD")
                    .arg(self.timers_key(Lane::Inbox))
                    .arg(at)
                    .arg(claim.contact.as_str())
                    .ignore();
            }
            pipe.invoke_script(&inv);
            if jobs {
                pipe.cmd("ZINCRBY")
                    .arg(self.ready_key(Lane::Outbox))
                    .arg(1)
                    .arg(claim.contact.as_str())
                    .ignore();
            }
            pipe
        };
        let (left,): (i64,) = match build().query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis lost its scripts (restart, SCRIPT FLUSH): load and
                // run again; the commands around the script may repeat,
                // which they tolerate.
                self.commit
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                build().query_async(&mut conn).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        if left < 0 {
            return Ok(Committed::LeaseLost);
        }
        if commit.wake_at.is_none() {
            let _: i64 = redis::cmd("ZREM")
                .arg(self.timers_key(Lane::Inbox))
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

    async fn due_timers(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.timers_key(lane))
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

    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let mut inv = self.finish.prepare_invoke();
        inv.key(self.lease_key(Lane::Outbox, c))
            .key(self.contact_key(c, "outbox"))
            .key(self.contact_key(c, "outbox:head"))
            .key(self.contact_key(c, "deliveries"))
            .key(self.contact_key(c, "dead"))
            .key(format!("{}dead", self.prefix))
            .key(self.contact_key(c, "consent"))
            .arg(&claim.owner)
            .arg(id);
        for a in record_args(&finish.record)? {
            inv.arg(a);
        }
        let consent = match &finish.consent {
            Some(change) => {
                serde_json::to_string(change).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => String::new(),
        };
        inv.arg(finish.dead_letter.as_deref().unwrap_or(b""))
            .arg(super::now_secs())
            .arg(c.as_str())
            .arg(consent);
        let held: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let ok: i64 = self
            .defer
            .key(self.lease_key(Lane::Outbox, c))
            .key(self.contact_key(c, "outbox:head"))
            .arg(&claim.owner)
            .arg(if head.is_some() { "1" } else { "0" })
            .arg(head.as_deref().unwrap_or(b""))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if ok == 0 {
            return Ok(());
        }
        // The timer first: until it exists the ready mark keeps the
        // contact in sight (a crash here costs an early retry, no loss).
        let _: i64 = redis::cmd("ZADD")
            .arg(self.timers_key(Lane::Outbox))
            .arg(until)
            .arg(c.as_str())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.unready(Lane::Outbox, c, &claim.version).await
    }

    async fn wake_deferred(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.timers_key(Lane::Outbox))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if members.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.timers_key(Lane::Outbox)).arg("XX");
        for m in &members {
            cmd.arg(0).arg(m);
        }
        let _: i64 = cmd.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn deliveries(&self, contact: &ContactKey) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.contact_key(contact, "deliveries"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out: Vec<Delivery> = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with("w:"))
            .filter_map(|(_, v)| record_of(&v))
            .collect();
        out.sort_by(|a, b| (a.at, &a.job).cmp(&(b.at, &b.job)));
        Ok(out)
    }

    async fn consent(&self, contact: &ContactKey) -> Result<Vec<ConsentChange>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.contact_key(contact, "consent"))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|sid| match sid.map.get("c") {
                Some(Value::BulkString(b)) => serde_json::from_slice(b).ok(),
                _ => None,
            })
            .collect())
    }

    async fn windows(&self, contact: &ContactKey) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut all: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.contact_key(contact, "window"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        all.sort();
        Ok(all)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.conn.clone();
        let contacts: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{}dead", self.prefix))
            .arg(0)
            .arg(limit.saturating_sub(1) as i64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for contact in contacts.iter().filter_map(|m| ContactKey::parse(m)) {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.contact_key(&contact, "dead"))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit - out.len())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for entry in entries_of(reply)? {
                out.push(DeadLetter {
                    contact: contact.clone(),
                    entry,
                });
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn take_rate(&self, key: &str, interval_us: u64, burst: u32) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let wait: u64 = self
            .rate
            .key(format!("{}rate:{key}", self.prefix))
            .arg(interval_us.max(1))
            .arg(burst.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(wait)
    }

    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .hold
            .key(format!("{}rate:{key}", self.prefix))
            .arg(ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json =
            serde_json::to_string(&breaker).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: () = redis::pipe()
            .cmd("HSETNX")
            .arg(format!("{}breakers", self.prefix))
            .arg(number)
            .arg(json)
            .ignore()
            .cmd("HSETNX")
            .arg(format!("{}breakers:probe", self.prefix))
            .arg(number)
            .arg(breaker.probe_at)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let keys = [
            format!("{}breakers", self.prefix),
            format!("{}breakers:probe", self.prefix),
        ];
        let mut pipe = redis::pipe();
        for k in &keys {
            match number {
                Some(n) => pipe.cmd("HDEL").arg(k).arg(n).ignore(),
                None => pipe.cmd("DEL").arg(k).ignore(),
            };
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        let mut conn = self.conn.clone();
        let (all, probes): (
            Vec<(String, String)>,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("HGETALL")
            .arg(format!("{}breakers", self.prefix))
            .cmd("HGETALL")
            .arg(format!("{}breakers:probe", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out: Vec<(String, Breaker)> = all
            .into_iter()
            .filter_map(|(n, json)| {
                let mut b: Breaker = serde_json::from_str(&json).ok()?;
                if let Some(p) = probes.get(&n) {
                    b.probe_at = *p;
                }
                Some((n, b))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let got: i64 = self
            .probe
            .key(format!("{}breakers:probe", self.prefix))
            .arg(number)
            .arg(now)
            .arg(next)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(got == 1)
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if claim.lane == Lane::Outbox {
            let (left, _): (u64, i64) = redis::pipe()
                .cmd("XLEN")
                .arg(self.stream_key(&Queue::Outbox(claim.contact.clone())))
                .cmd("ZREM")
                .arg(self.timers_key(Lane::Outbox))
                .arg(claim.contact.as_str())
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
