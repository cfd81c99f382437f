//! The Redis backend.
//!
//! Keys (`P` is `store.key_prefix`; `{…}` is a Redis Cluster hash tag).
//! Each contact belongs to one of [`SHARDS`] shards (`N`, from its
//! pseudonymous key); the contact's keys and its shard's ready sets and
//! timers share the shard's hash tag `{s:N}`, so every write about a
//! contact is one script in one slot, on one Redis or on a cluster:
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `P{s:N}:c:<contact>:inbox` | stream of sealed events (field `e`) | 30 days after the last append |
//! | `P{s:N}:c:<contact>:seen:<dedup>` | string, de-duplication mark | 8 days |
//! | `P{s:N}:c:<contact>:session` | string, the sealed session | `flows.session_ttl` after the last write |
//! | `P{s:N}:c:<contact>:history` | stream of sealed message history entries (field `h`; the id's time is when it was written) | `privacy.retention_days` after the last entry (older entries are purged by the retention job) |
//! | `P{s:N}:c:<contact>:held`, `P{meta}:held` | string, the contact's legal hold mark (the purge passes their history by; their profile, history and data key are made persistent while it holds, again on each retention pass), and hash: contact → since when (Unix s), the held contacts (see `store::HoldStore`) | kept until the hold is lifted |
//! | `P{s:N}:c:<contact>:profile` | string, the sealed profile (names, tags, privacy notices and confirmations) | `privacy.retention_days` after the last write |
//! | `P{s:N}:c:<contact>:outbox` | stream of sealed outbound jobs | 30 days after the last append |
//! | `P{s:N}:c:<contact>:lease:inbox`, `P{s:N}:c:<contact>:lease:outbox` | string, the lease holder's token | the lease time, 4 s, renewed every second while held (deleted on commit or release) |
//! | `P{s:N}:c:<contact>:outbox:head` | string, the retry state of the outbox's first job | until that job is finished (30 days at most) |
//! | `P{s:N}:c:<contact>:deliveries` | hash: job id → `RR\|{json}` delivery record (rank, state, code; never content), and `w:<wamid hash>` → job id | 30 days after the last write |
//! | `P{s:N}:c:<contact>:dead` | stream of sealed dead letters (the job and its last error) | 30 days after the last one |
//! | `P{s:N}:c:<contact>:consent` | stream: the consent ledger (JSON entries: purpose, granted, time, source, policy version; no message content) | kept: it is the evidence of consent |
//! | `P{s:N}:c:<contact>:window` | hash: business phone_number_id → the customer's last message time (Unix s) | 2 days after the last write |
//! | `P{s:N}:c:<contact>:key` | string: the contact's data key, wrapped under a master key (see `privacy::keys`) | `privacy.retention_days` + 2 days after the contact's last message |
//! | `P{s:N}:c:<contact>:key:was` | string: the data key's previous wrapping after a rewrap; a claim taken under it still commits and finishes (the key is the same) | [`super::REWRAPPED_KEEP`] (one hour) |
//! | `P{s:N}:stats:<day>` | hash: the shard's anonymous counters of a UTC day (messages in and out, opt-outs, opt-ins, exports, erasures, `step:<flow>/<step>`; another business's as `business:<id>:<name>`, see `store::stats`); no contact | 400 days |
//! | `P{s:N}:c:<contact>:cmp` | hash: campaign id → the contact's turn in it (`q` queued, `s` skipped, `d` done): never twice per campaign | as long as the contact's data key (`privacy.retention_days` + 2 days) after the last campaign |
//! | `P{s:N}:c:<contact>:lastcmp` | string: the campaign whose message the contact got last, so an opt-out within 24 hours counts for it | 24 hours |
//! | `P{s:N}:cmp:<id>` | hash: the shard's counters of one campaign (queued, sent, delivered, read, `failed:<code>`, `skipped:<reason>`, cancelled, opt_outs); no contact | 400 days after the last change |
//! | `P{cmp:<id>}` | hash: a campaign's definition (name, template, rate, audience kind; no contact) and status | 400 days |
//! | `P{cmp:<id>}:queue`, `P{cmp:<id>}:members` | the audience left to dispatch: a list of member names (pseudonymous keys) in order, and a hash of name → entry (the pseudonymous key, `\|`, and the sealed number and variables); an entry leaves once dispatched, when the contact is erased (by key, `HDEL`), or when the campaign is cancelled (see `audience`) | until dispatched (`send_at` is at most a year ahead; 400 days at most) |
//! | `P{cmp:<id>}:lease` | string: the dispatcher holding the campaign | 10 s |
//! | `P{cmp}:index` | sorted set: campaign ids by creation time | 400 days after the last campaign |
//! | `P{cmp}:active` | sorted set: the campaigns still to dispatch (scheduled, running), by creation time; one leaves when it is dispatched or cancelled | 400 days after the last campaign |
//! | `P{s:N}:ready:inbox`, `P{s:N}:ready:outbox` | sorted sets: the shard's contacts with pending entries, by when they became ready (Unix ms); a member leaves when its queue is drained | 35 days after the last addition (longer than any entry it points to lives) |
//! | `P{s:N}:timers` | sorted set: contacts by when their session's timeout is due (Unix s); a member leaves when its timer fires or is cancelled | 35 days (at least `flows.session_ttl` + 1 day) after the last addition |
//! | `P{s:N}:due` | sorted set: contacts whose outbox waits (backoff, rate limit, paused number) by when to try again (Unix ms); a member leaves when its outbox is released | 35 days after the last addition |
//! | `P{s:N}:history` | sorted set: the shard's contacts with history, by the time of their oldest entry (Unix ms), for the retention purge; a member leaves when its history is purged or erased | 35 days (at least `privacy.retention_days` + 2 days) after the last addition |
//! | `P{s:N}:dead` | sorted set: contacts with dead letters, by the time of the last one | 35 days after the last one |
//! | `P{sys}:inbox`, `P{sys}:seen:<dedup>` | the same as a contact's, for account-level events | 30 days / 8 days |
//! | `P{quarantine}:inbox`, `P{quarantine}:seen:<sha>` | unreadable signed bodies | 30 days / 8 days |
//! | `P{audit}:log`, `P{audit}:head` | stream of audit entries (JSON: time, kind, pseudonymous contact, actor, chain hashes; no content), id `<seq>-1`; and the last entry's sequence number and hash | kept: it is the accountability record (GDPR Art. 5(2)), and a gap would break its chain |
//! | `P{audit}:requests`, `P{audit}:requests:closed` | the request index (see `store::audit_index`): hash, group (`<what>\|<contact>`) → its open request entries, one a line (`r`/`c`, seq, JSON); and sorted set of closed requests' entries (JSON) by seq; `indexed_from` in the head: the first entry the index saw (1 once complete) | an open group until closed or lapsed; the newest 1,000 closed entries |
//! | `P{meta}:pin:<name>` | string: the store's identity, the id (8 hex digits) of the pseudonym key its contacts are named under; a server with another key refuses to start; and `owners_adopted`, set once the contacts an earlier release stored were given to the `default` business | kept: it names the store, not a contact |
//! | `P{s:N}:c:<contact>:link` | string, for a key that is an alias (a customer's other id, see `store::links`): the canonical contact's key (keyed hashes only) | kept until the contact is erased: it applies the contact's kept consent ledger to both ids |
//! | `P{s:N}:c:<contact>:aliases` | set: the keys linked to the contact, for its erasure | kept until the contact is erased |
//! | `P{s:N}:owners`, `P{s:N}:owned` | hashes: the shard's contacts → their business id, and business id → how many (see `businesses`) | a field until the contact's data has expired (the retention job forgets it: no data key, not suppressed) or its business is removed |
//! | `P{s:N}:owners:stale` | hash: contact key → when a pruning pass first found it with no data key and not suppressed (Unix s); its owner is forgotten by a pass `store::PRUNE_GRACE` (an hour) later | 3 days after the last note |
//! | `P{meta}:removed` | hash: business id → its removal record (JSON: started, finished, what was deleted) | kept: the certificate's source |
//! | `P{suppressed}` | hash: pseudonymous key of an erased contact → when (Unix s); so their opt-out survives and a later import cannot re-subscribe them | kept |
//! | `Pconsole:<hash>` | string: an operator's console session (sealed: expiry, CSRF token, the credential it was opened with, the simulator's conversation), under a hash of its cookie id | until it expires (8 hours) or ends |
//! | `Pconsole:sessions` | set: the session keys above, so that a change of the admin credential ends them all at once | 9 hours after the last sign-in |
//! | `Prate:<name>` | string, a GCRA rate limit's theoretical arrival time (Unix µs) | just past it |
//! | `Pbreakers`, `Pbreakers:probe` | hashes: phone_number_id → why its sending is paused (JSON), and when the next probe may go; a field leaves when the breaker closes | 30 days after the last opening |
//!
//! `<contact>` is the pseudonymous contact key, never a phone number;
//! `<dedup>` is a keyed hash.
//!
//! Every state change of a contact is one Lua script, so it is atomic:
//! the seen-mark, the append and the ready mark (concurrent duplicate
//! deliveries to any number of instances append once); a commit (entries
//! removed, session, jobs queued and marked ready, timer, window, delivery
//! records, consent, the ready mark dropped when the inbox is empty, the
//! lease released); a finished job (removed with its record, and with the
//! claim's release when it is the last). A ready mark is therefore never
//! missing while its queue holds entries, and never dropped while it does.
//!
//! Campaign counters are per shard (`P{s:N}:cmp:<id>`), so a contact's
//! progress is counted in the same script as the write that makes it
//! (a finished job, a status webhook, an opt-out, an erasure). Where the
//! campaign is only known inside the script (a status update that names
//! just the wamid, the contact's last campaign, its marks), the script
//! names the counters key from the shard's declared prefix key
//! (`P{s:N}:cmp:`): the same hash tag, so the same slot, which Redis
//! Cluster accepts; a proxy that routes by declared keys only would not.
//!
//! The hot path costs one command per step (append, claim, commit, claim,
//! rate, finish); contacts are handed from the webhook to the workers and
//! from the workers to the senders inside the process, so the shared sets
//! are read only by the periodic sweep (one command per shard), which finds
//! work left by another instance, by a crash, or by a timer.

use std::time::Duration;

/// How long the index of console sessions outlives the last sign-in (a
/// session lasts 8 hours).
const CONSOLE_INDEX_TTL: u64 = 9 * 3600;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use conn::Conn;
use redis::{RedisError, Value};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Appended, Breaker, Claim, Commit, Committed, DEDUP_TTL, DeadLetter, Delivery, Finish,
    INBOX_TTL, InboxEntry, Lane, Queue, RateGrant, StoreError, StoredEntry, stats,
};
use crate::domain::campaign::CampaignStatus;
use crate::domain::consent::ConsentChange;
use crate::domain::{BusinessId, ContactKey};

mod audience;
mod audit;
mod businesses;
mod campaigns;
mod conn;
mod contacts;
mod docs;
mod history;
mod holds;
mod inbox;
mod keys;
mod lanes;
mod links;
mod ops;
mod outbox;
mod scan;
mod scripts;

/// The largest COUNT Redis takes (a signed 64-bit number); callers may
/// ask for "everything" with `usize::MAX`.
const MAX_COUNT: usize = i64::MAX as usize;

/// How many shards contacts are spread over (see the module docs). The
/// layout of every key depends on it: changing it strands what is queued.
pub const SHARDS: u16 = 16;

/// The shard of a contact: from its key, a keyed hash in hex.
fn shard_of(contact: &ContactKey) -> u16 {
    contact
        .as_str()
        .get(..4)
        .and_then(|h| u16::from_str_radix(h, 16).ok())
        .unwrap_or(0)
        % SHARDS
}

/// `lua/append.lua`: its header states its KEYS and ARGV.
const APPEND_LUA: &str = include_str!("lua/append.lua");

/// `lua/data_key.lua`: its header states its KEYS and ARGV.
const DATA_KEY_LUA: &str = include_str!("lua/data_key.lua");

/// `lua/consent.lua`: its header states its KEYS and ARGV.
const CONSENT_LUA: &str = include_str!("lua/consent.lua");

/// `lua/pin.lua`: its header states its KEYS and ARGV.
const PIN_LUA: &str = include_str!("lua/pin.lua");

/// `lua/rewrap.lua`: its header states its KEYS and ARGV.
const REWRAP_LUA: &str = include_str!("lua/rewrap.lua");

/// `lua/claim.lua`: its header states its KEYS and ARGV.
const CLAIM_LUA: &str = include_str!("lua/claim.lua");

/// `lua/merge.lua`: its header states its KEYS and ARGV.
const MERGE_LUA: &str = include_str!("lua/merge.lua");

/// `lua/commit.lua`: its header states its KEYS and ARGV.
const COMMIT_LUA: &str = include_str!("lua/commit.lua");

/// `lua/finish.lua`: its header states its KEYS and ARGV.
const FINISH_LUA: &str = include_str!("lua/finish.lua");

/// `lua/defer.lua`: its header states its KEYS and ARGV.
const DEFER_LUA: &str = include_str!("lua/defer.lua");

/// `lua/rate.lua`: its header states its KEYS and ARGV.
const RATE_LUA: &str = include_str!("lua/rate.lua");

/// `lua/hold.lua`: its header states its KEYS and ARGV.
const HOLD_LUA: &str = include_str!("lua/hold.lua");

/// `lua/probe.lua`: its header states its KEYS and ARGV.
const PROBE_LUA: &str = include_str!("lua/probe.lua");

/// `lua/release.lua`: its header states its KEYS and ARGV.
const RELEASE_LUA: &str = include_str!("lua/release.lua");

/// `lua/renew.lua`: its header states its KEYS and ARGV.
const RENEW_LUA: &str = include_str!("lua/renew.lua");

/// `lua/sweep.lua`: its header states its KEYS and ARGV.
const SWEEP_LUA: &str = include_str!("lua/sweep.lua");

/// `lua/audit.lua`: its header states its KEYS and ARGV.
const AUDIT_LUA: &str = include_str!("lua/audit.lua");

/// `lua/erase.lua`: its header states its KEYS and ARGV.
const ERASE_LUA: &str = include_str!("lua/erase.lua");

/// `lua/purge.lua`: its header states its KEYS and ARGV.
const PURGE_LUA: &str = include_str!("lua/purge.lua");

/// `lua/dispatch.lua`: its header states its KEYS and ARGV.
const DISPATCH_LUA: &str = include_str!("lua/dispatch.lua");

/// `lua/status.lua`: its header states its KEYS and ARGV.
const STATUS_LUA: &str = include_str!("lua/status.lua");

/// `lua/lease.lua`: its header states its KEYS and ARGV.
const LEASE_LUA: &str = include_str!("lua/lease.lua");

/// `lua/set_head.lua`: its header states its KEYS and ARGV.
const SET_HEAD_LUA: &str = include_str!("lua/set_head.lua");

/// `lua/wake.lua`: its header states its KEYS and ARGV.
const WAKE_LUA: &str = include_str!("lua/wake.lua");

/// The Redis store; cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    append: redis::Script,
    claim: redis::Script,
    commit: redis::Script,
    finish: redis::Script,
    defer: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    rate: redis::Script,
    hold: redis::Script,
    probe: redis::Script,
    wake: redis::Script,
    sweep: redis::Script,
    audit: redis::Script,
    audit_lapse: redis::Script,
    audit_reset: redis::Script,
    erase: redis::Script,
    purge: redis::Script,
    data_key: redis::Script,
    rewrap: redis::Script,
    consent: redis::Script,
    pin: redis::Script,
    dispatch: redis::Script,
    status: redis::Script,
    lease: redis::Script,
    set_head: redis::Script,
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

fn no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// How long an open breaker is kept without news (s): long past any
/// probe; if it lapses, the next send finds out again.
const BREAKER_TTL: u64 = 30 * 86_400;

/// How long a day's statistics are kept (s).
const STATS_TTL: u64 = stats::KEEP_DAYS * 86_400;
/// How long a campaign's keys are kept after their last change (s).
const CAMPAIGN_TTL_S: u64 = super::CAMPAIGN_TTL.as_secs();

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A campaign status as stored.
fn status_of(stored: &str) -> Result<CampaignStatus, StoreError> {
    CampaignStatus::parse(stored)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown campaign status {stored:?}")))
}

/// Contacts from several shards' sorted sets: merged by score (lowest
/// first), at most `limit`.
fn merge_scored(per_shard: Vec<Vec<(String, f64)>>, limit: usize) -> Vec<ContactKey> {
    let mut all: Vec<(String, f64)> = per_shard.into_iter().flatten().collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.iter()
        .filter_map(|(m, _)| ContactKey::parse(m))
        .take(limit)
        .collect()
}

impl RedisStore {
    /// Connects (and keeps reconnecting) to `url`; keys go under `prefix`.
    /// With `ca` (PEM), a `rediss://` server's certificate must chain to
    /// it (else to the system's roots).
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        let invalid = || StoreError::Unavailable("store.redis_url is not a valid Redis URL".into());
        let client = match ca {
            None => redis::Client::open(url.expose_secret()).map_err(|_| invalid())?,
            Some(pem) => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.expose_secret())
                    .map_err(|_| invalid())?;
                redis::Client::build_with_tls(info, conn::trusting(pem)).map_err(conn::tls_error)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self::with(Conn::Single(conn), prefix))
    }

    /// Connects to a Redis Cluster through `urls`: one or more of its
    /// nodes, separated by commas (the rest are found from them).
    pub async fn connect_cluster(
        urls: &SecretString,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = urls
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let invalid =
            || StoreError::Unavailable("store.redis_url is not a list of valid Redis URLs".into());
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5));
        if let Some(pem) = ca {
            builder = builder.certs(conn::trusting(pem));
        }
        let client = builder.build().map_err(|e| {
            if e.kind() == redis::ErrorKind::InvalidClientConfig {
                conn::tls_error(e)
            } else {
                invalid()
            }
        })?;
        let conn = client.get_async_connection().await.map_err(unavailable)?;
        Ok(Self::with(Conn::Cluster(conn), prefix))
    }

    fn with(conn: Conn, prefix: &str) -> Self {
        RedisStore {
            conn,
            prefix: prefix.to_owned(),
            append: redis::Script::new(APPEND_LUA),
            claim: redis::Script::new(CLAIM_LUA),
            commit: redis::Script::new(&format!("{MERGE_LUA}{COMMIT_LUA}")),
            finish: redis::Script::new(&format!("{MERGE_LUA}{FINISH_LUA}")),
            defer: redis::Script::new(DEFER_LUA),
            release: redis::Script::new(RELEASE_LUA),
            renew: redis::Script::new(RENEW_LUA),
            rate: redis::Script::new(RATE_LUA),
            hold: redis::Script::new(HOLD_LUA),
            probe: redis::Script::new(PROBE_LUA),
            wake: redis::Script::new(WAKE_LUA),
            sweep: redis::Script::new(SWEEP_LUA),
            audit: redis::Script::new(AUDIT_LUA),
            audit_lapse: redis::Script::new(audit::LAPSE_LUA),
            audit_reset: redis::Script::new(audit::RESET_LUA),
            erase: redis::Script::new(ERASE_LUA),
            purge: redis::Script::new(PURGE_LUA),
            data_key: redis::Script::new(DATA_KEY_LUA),
            rewrap: redis::Script::new(REWRAP_LUA),
            consent: redis::Script::new(CONSENT_LUA),
            pin: redis::Script::new(PIN_LUA),
            dispatch: redis::Script::new(DISPATCH_LUA),
            status: redis::Script::new(STATUS_LUA),
            lease: redis::Script::new(LEASE_LUA),
            set_head: redis::Script::new(SET_HEAD_LUA),
        }
    }

    /// The value of a string key, if any.
    async fn get_bytes(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// A key of a shard: `P{s:N}:<suffix>`.
    fn shard_key(&self, shard: u16, suffix: &str) -> String {
        format!("{}{{s:{shard}}}:{suffix}", self.prefix)
    }

    /// A key of a contact, in its shard's slot: `P{s:N}:c:<contact>:<suffix>`.
    fn contact_key(&self, contact: &ContactKey, suffix: &str) -> String {
        self.shard_key(shard_of(contact), &format!("c:{contact}:{suffix}"))
    }

    /// A key of a queue that is not a contact's: `P{sys}:<suffix>`.
    fn queue_key(&self, queue: &Queue, suffix: &str) -> String {
        match queue {
            Queue::Contact(k) | Queue::Outbox(k) => self.contact_key(k, suffix),
            other => format!("{}{{{}}}:{}", self.prefix, other.name(), suffix),
        }
    }

    fn stream_key(&self, queue: &Queue) -> String {
        match queue {
            Queue::Outbox(_) => self.queue_key(queue, "outbox"),
            _ => self.queue_key(queue, "inbox"),
        }
    }

    /// A shard's anonymous counters of one day: `P{s:N}:stats:<day>`.
    fn stats_key(&self, shard: u16, day: &str) -> String {
        self.shard_key(shard, &format!("stats:{day}"))
    }

    fn ready_key(&self, lane: Lane, shard: u16) -> String {
        self.shard_key(shard, &format!("ready:{}", lane.name()))
    }

    fn timers_key(&self, lane: Lane, shard: u16) -> String {
        self.shard_key(
            shard,
            match lane {
                Lane::Inbox => "timers",
                Lane::Outbox => "due",
            },
        )
    }

    /// The campaigns of an index (`P{cmp}:index` or `P{cmp}:active`),
    /// oldest first, whose status `keep` accepts; the ids of the others
    /// (expired, or no longer active) leave the index.
    async fn indexed_campaigns(
        &self,
        index: &str,
        keep: fn(CampaignStatus) -> bool,
    ) -> Result<Vec<super::StoredCampaign>, StoreError> {
        let mut conn = self.conn.clone();
        let index = format!("{}{{cmp}}:{index}", self.prefix);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.campaign_key(id, ""))
                .arg("record")
                .arg("status");
        }
        let rows: Vec<(Option<Vec<u8>>, Option<String>)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (id, row) in ids.into_iter().zip(rows) {
            match row {
                (Some(record), Some(status)) if keep(status_of(&status)?) => {
                    out.push(super::StoredCampaign {
                        id,
                        record,
                        status: status_of(&status)?,
                    })
                }
                // Expired, or finished (the status moved between the two
                // writes of `set_campaign_status`).
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            let () = redis::cmd("ZREM")
                .arg(&index)
                .arg(&stale)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(out)
    }

    /// A campaign's keys, in its own slot: `P{cmp:<id>}<suffix>`.
    fn campaign_key(&self, id: &str, suffix: &str) -> String {
        format!("{}{{cmp:{id}}}{suffix}", self.prefix)
    }

    /// A campaign's audience keys: queue, members, and an older
    /// version's list (see [`super::audience`]).
    fn audience_keys(&self, id: &str) -> [String; 3] {
        use self::audience::{MEMBERS, OLD_LIST, QUEUE};
        [QUEUE, MEMBERS, OLD_LIST].map(|suffix| self.campaign_key(id, suffix))
    }

    fn lease_key(&self, lane: Lane, contact: &ContactKey) -> String {
        self.contact_key(contact, &format!("lease:{}", lane.name()))
    }

    /// Runs a pipeline of script calls; if Redis lost its scripts (a
    /// restart, SCRIPT FLUSH), loads them and runs it again (every script
    /// here may run twice).
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        build: impl Fn() -> redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match build().query_async(&mut conn).await {
            Err(e) if no_script(&e) => {
                for script in [
                    &self.append,
                    &self.wake,
                    &self.sweep,
                    &self.dispatch,
                    &self.renew,
                ] {
                    script
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                build().query_async(&mut conn).await.map_err(unavailable)
            }
            other => other.map_err(unavailable),
        }
    }

    fn evalsha<'a, K: redis::ToRedisArgs>(
        pipe: &'a mut redis::Pipeline,
        script: &redis::Script,
        keys: &[K],
    ) -> &'a mut redis::Pipeline {
        let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        cmd
    }
}
