//! The embedded backend: one redb file (`<store.path>/whatsify.redb`), no
//! server, one process.
//!
//! Tables (the same content as the Redis keys):
//!
//! | table | key → value | lifetime |
//! |---|---|---|
//! | `seen` | `"<queue>/<dedup>"` → expiry (Unix s) | 8 days, checked on read |
//! | `seen_expiry` | `(expiry, "<queue>/<dedup>")` → () | swept with `seen` once expired |
//! | `inbox` | `("<queue>", seq)` → sealed event | until processed by a worker |
//! | `seq` | `"<queue>"` → next sequence number | with its queue |
//! | `ready` | contact key → first arrival (Unix ms; read in random order) | until the inbox is drained |
//! | `outbox_ready` | contact key → first job (Unix ms) | until the outbox is drained |
//! | `timers`, `timer_of` | `(due, contact)` → (), and contact → due | until the timer fires or is cancelled |
//! | `sessions`, `session_expiry` | contact key → sealed session, and contact key → when it expires | `flows.session_ttl` after the last write (purged hourly) |
//! | `outbox_head` | contact key → retry state of the outbox's first job | until that job is finished |
//! | `outbox_due`, `outbox_due_of` | `(due, contact)` → (), and contact → due: outboxes that wait | until the outbox is released |
//! | `deliveries` | `(contact, job id)` → delivery record (JSON; state, never content) | 30 days after the record's time (purged hourly) |
//! | `wamids` | `(contact, wamid hash)` → job id | with its record |
//! | `dead`, `dead_index` | `("d:<contact>", seq)` → sealed dead letter, and contact → time of the last one | 30 days after the contact's last one (purged hourly) |
//! | `consent` | `("k:<contact>", seq)` → consent ledger entry (JSON) | kept: it is the evidence of consent |
//! | `windows` | `(contact, phone_number_id)` → the customer's last message time (Unix s) | 2 days after it (purged hourly) |
//! | `history` | `("h:<contact>", seq)` → (time in Unix ms, sealed message history entry) | `privacy.retention_days` (purged by the retention job) |
//! | `history_age` | `(time, "h:<contact>", seq)` → (): the history by age, for the retention purge | with its entry |
//! | `links`, `aliases` | alias contact key → canonical contact key (see `store::links`; keyed hashes only), and `(canonical, alias)` → (): one customer known by a number and a business-scoped user id | kept until the contact is erased |
//! | `suppressed` | pseudonymous key of an erased contact → when (Unix s) | kept: their opt-out survives |
//! | `audit` | sequence number → audit entry (JSON: time, kind, pseudonymous contact, actor, chain hashes; no content) | kept: it is the audit trail |
//! | `audit_head` | `"head"` → (sequence number, hash) of the last entry appended, so a cut-off tail shows (a store from before it starts from its last entry); `"indexed_from"` → (the first entry the request index saw, 1 once complete; "") | kept |
//! | `audit_requests`, `audit_requests_closed` | the request index (see `store::audit_index`): `(group, seq)` → (op `r`/`c`, entry JSON) of open requests; seq → entry JSON of closed ones | an open group until closed or lapsed; the newest 1,000 closed entries |
//! | `profiles` | contact key → (expiry, sealed profile) | `privacy.retention_days` after the last write (not read past its expiry; purged hourly) |
//! | `data_keys` | contact key → (expiry, wrapped data key) | `privacy.retention_days` + 2 days after the contact's last message (likewise) |
//! | `data_keys_rewrapped` | contact key → (expiry, the data key's previous wrapping): a claim taken before a rewrap still commits | [`super::REWRAPPED_KEEP`] after the rewrap (likewise); erased with the contact |
//! | `stats` | `(day, counter)` → amount: the anonymous daily statistics (another business's counters named `business:<id>:<name>`, see `store::stats`) | 400 days |
//! | `pins` | name → value: the store's identity (the id of the pseudonym key its contacts are named under) | kept |
//! | `campaigns` | campaign id → (creation time in Unix ms, status, definition JSON) | 400 days after its creation ([`super::CAMPAIGN_TTL`]; purged hourly) |
//! | `campaign_index` | `(creation time in Unix ms, campaign id)` → (): campaigns oldest first | with its campaign |
//! | `campaign_audience` | `(campaign id, seq)` → sealed audience entry, taken from the front | until dispatched, or with its campaign |
//! | `campaign_counts` | `(campaign id, counter)` → amount (`queued`, `sent`, `skipped:<reason>`, …; may go back to 0) | with its campaign |
//! | `campaign_marks` | `(contact, campaign id)` → (expiry, Unix s; `q` queued, `s` skipped, `d` done): the contact had its turn | as long as the contact's data key (not read past its expiry; purged hourly); erased with the contact |
//! | `owners` | contact key → its business id (see `store::BusinessStore`) | until the contact's data has expired (the retention job forgets it: no data key, not suppressed) or its business is removed |
//! | `owners_stale` | contact key → when a pruning pass first found it without data (Unix s; its owner goes `store::PRUNE_GRACE` later) | until then, or until it has data again |
//! | `removals` | business id → its removal record (JSON: started, finished, what was deleted) | kept: the certificate's source |
//! | `last_campaign` | contact → (expiry, campaign id): the campaign whose message was last sent to the contact, to which an opt-out is attributed (once) | 24 hours after that message (likewise) |
//!
//! redb is copy-on-write: a removed value's bytes stay in the file's free
//! pages until they are reused. Message content is only ever stored
//! sealed, so what lingers is ciphertext; an erased contact's data key is
//! among what lingers, and with the master key it could open it. Keep the
//! store's folder as protected as the master key.
//!
//! Rate limits, breakers and campaign leases live in memory, like leases:
//! one process.
//!
//! The outbox shares the `inbox` table under the queue name `o:<contact>`.
//! Leases live in memory: one process owns the file, and a restart frees
//! them all.
//!
//! Writes go through one writer thread that gathers concurrent requests
//! into a single transaction (group commit): each commit is durable
//! (fsync) before any of its callers is answered, and the cost of the fsync
//! is shared by everyone waiting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{
    Appended, Breaker, Claim, Commit, Committed, DEDUP_TTL, DeadLetter, Delivery, Finish,
    InboxEntry, Lane, Queue, RateGrant, StoreError, StoredEntry, stats,
};
use crate::clock::now_secs;
use crate::domain::campaign::CampaignStatus;
use crate::domain::consent::ConsentChange;
use crate::domain::{BusinessId, ContactKey};

mod audience;
mod audit;
mod businesses;
mod campaigns;
mod contacts;
mod docs;
mod dump;
mod erase;
mod history;
mod holds;
mod inbox;
mod keys;
mod lanes;
mod links;
mod ops;
mod outbox;
mod purge;
mod writer;

use purge::{drop_campaign, purge_expired};
use writer::writer_loop;

const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const SEEN_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("seen_expiry");
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");
const READY: TableDefinition<&str, u64> = TableDefinition::new("ready");
const OUTBOX_READY: TableDefinition<&str, u64> = TableDefinition::new("outbox_ready");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// contact → when its session expires (Unix s): `flows.session_ttl` after
/// the last write.
const SESSION_EXPIRY: TableDefinition<&str, u64> = TableDefinition::new("session_expiry");
const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("timers");
const TIMER_OF: TableDefinition<&str, u64> = TableDefinition::new("timer_of");
const OUTBOX_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_head");
const OUTBOX_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("outbox_due");
const OUTBOX_DUE_OF: TableDefinition<&str, u64> = TableDefinition::new("outbox_due_of");
const DELIVERIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("deliveries");
const WAMIDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("wamids");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
const DEAD_INDEX: TableDefinition<&str, u64> = TableDefinition::new("dead_index");
const WINDOWS: TableDefinition<(&str, &str), u64> = TableDefinition::new("windows");
const CONSENT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("consent");
const PROFILES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("profiles");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const HISTORY: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("history");
const SUPPRESSED: TableDefinition<&str, u64> = TableDefinition::new("suppressed");
const HISTORY_AGE: TableDefinition<(u64, &str, u64), ()> = TableDefinition::new("history_age");
/// name → value: the store's pins (see [`Store::pin`]).
const PINS: TableDefinition<&str, &str> = TableDefinition::new("pins");
/// (day, counter) → amount: the anonymous daily statistics.
const STATS: TableDefinition<(&str, &str), u64> = TableDefinition::new("stats");
/// contact → (expiry, Unix s; wrapped data key).
const DATA_KEYS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("data_keys");
/// contact → (expiry, Unix s; the data key's previous wrapping), for
/// [`super::REWRAPPED_KEEP`] after a rewrap.
const REWRAPPED: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("data_keys_rewrapped");
/// campaign id → (creation time, Unix ms; status; definition JSON).
const CAMPAIGNS: TableDefinition<&str, (u64, &str, &[u8])> = TableDefinition::new("campaigns");
/// (creation time, Unix ms; campaign id) → (): the campaigns in order.
const CAMPAIGN_INDEX: TableDefinition<(u64, &str), ()> = TableDefinition::new("campaign_index");
/// (campaign id, seq) → sealed audience entry; dispatched from the front,
/// so the entries left are contiguous.
const CAMPAIGN_AUDIENCE: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("campaign_audience");
/// (campaign id, counter) → amount.
const CAMPAIGN_COUNTS: TableDefinition<(&str, &str), i64> = TableDefinition::new("campaign_counts");
/// (contact, campaign id) → (expiry, Unix s; mark): the contact's turn in
/// a campaign (see [`Mark`]).
const CAMPAIGN_MARKS: TableDefinition<(&str, &str), (u64, &str)> =
    TableDefinition::new("campaign_marks");
/// contact → (expiry, Unix s; campaign id): the campaign whose message the
/// contact was last sent, for a day.
const LAST_CAMPAIGN: TableDefinition<&str, (u64, &str)> = TableDefinition::new("last_campaign");
/// contact → its business id (see [`crate::store::BusinessStore`]).
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");
/// contact → when a pruning pass first found it without data (Unix s).
const OWNERS_STALE: TableDefinition<&str, u64> = TableDefinition::new("owners_stale");
/// business id → its removal record (JSON).
const REMOVALS: TableDefinition<&str, &[u8]> = TableDefinition::new("removals");

/// A contact's turn in a campaign, stored as one letter (as on Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// The contact's job is queued (no record yet): `q`.
    Queued,
    /// The contact was skipped: `s`.
    Skipped,
    /// The contact's job has a delivery record: `d`.
    Done,
}

impl Mark {
    fn code(self) -> &'static str {
        match self {
            Mark::Queued => "q",
            Mark::Skipped => "s",
            Mark::Done => "d",
        }
    }

    fn of(code: &str) -> Option<Mark> {
        [Mark::Queued, Mark::Skipped, Mark::Done]
            .into_iter()
            .find(|m| m.code() == code)
    }
}
/// How long an opt-out is attributed to the campaign whose message came
/// last (as on Redis).
const LAST_CAMPAIGN_KEEP: u64 = 86_400;

/// Campaign leases: campaign id → (owner, expiry).
type CampaignLeases = Arc<Mutex<HashMap<String, (String, Instant)>>>;

/// Lease holders: (lane, contact) → (token, expiry).
type Leases = Arc<Mutex<HashMap<(Lane, String), (String, Instant)>>>;

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Most expired de-duplication marks removed per transaction.
const MAX_SWEEP: usize = 1_000;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

type Done = Box<dyn FnOnce(bool) + Send>;
type Work = Box<dyn FnOnce(&redb::WriteTransaction) -> (bool, Done) + Send>;

/// Work for the writer thread.
enum Job {
    Append(Vec<InboxEntry>, Reply),
    /// Answers once the writer can take work (for `/readyz`).
    Ping(oneshot::Sender<()>),
    /// Anything else that writes: run in its own transaction.
    /// Runs in the group's transaction; returns what to do once the
    /// transaction is committed (`true`) or abandoned (`false`).
    Other(Work),
}

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
    leases: Leases,
    /// Rate limits: key → theoretical arrival time (Unix µs).
    rates: Arc<Mutex<HashMap<String, u64>>>,
    breakers: Arc<Mutex<HashMap<String, Breaker>>>,
    /// Console sessions: key → (expires at, sealed record). In memory: one
    /// process owns the database file, and a restart asks operators to
    /// sign in again.
    console: Arc<Mutex<ConsoleSessions>>,
    /// Who dispatches each campaign (see [`Store::campaign_lease`]).
    campaign_leases: CampaignLeases,
}

/// Console sessions: store key → (expires at, sealed record).
type ConsoleSessions = HashMap<String, (u64, Vec<u8>)>;

/// Console sessions kept at most (the soonest to expire go first).
const CONSOLE_SESSIONS_MAX: usize = 1000;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Sets (or with `None` clears) a contact's timer in a pair of tables.
fn set_timer(
    txn: &redb::WriteTransaction,
    timers: TableDefinition<(u64, &str), ()>,
    timer_of: TableDefinition<&str, u64>,
    key: &str,
    at: Option<u64>,
) -> Result<(), StoreError> {
    let mut timers = txn.open_table(timers).map_err(corrupt)?;
    let mut timer_of = txn.open_table(timer_of).map_err(corrupt)?;
    if let Some(old) = timer_of.remove(key).map_err(corrupt)? {
        timers.remove((old.value(), key)).map_err(corrupt)?;
    }
    if let Some(at) = at {
        timers.insert((at, key), ()).map_err(corrupt)?;
        timer_of.insert(key, at).map_err(corrupt)?;
    }
    Ok(())
}

/// Appends entries to a contact's consent ledger.
/// The audit log's last (sequence number, hash).
fn audit_last(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<(u64, String), StoreError> {
    match table.last().map_err(corrupt)? {
        Some((k, v)) => {
            let e: crate::domain::audit::Entry =
                serde_json::from_slice(v.value()).map_err(corrupt)?;
            Ok((k.value(), e.hash))
        }
        None => Ok((0, crate::domain::audit::GENESIS.to_owned())),
    }
}

/// The value of an `(expiry, value)` row, unless it is past its expiry
/// at `now` (Unix s).
fn unexpired((until, bytes): (u64, &[u8]), now: u64) -> Option<Vec<u8>> {
    (until > now).then(|| bytes.to_vec())
}

/// An `(expiry, value)` row of `table`, unless it is past its expiry.
fn read_unexpired(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, (u64, &[u8])>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let table = txn.open_table(table).map_err(corrupt)?;
    let v = table.get(key).map_err(corrupt)?;
    Ok(v.and_then(|v| unexpired(v.value(), now_secs())))
}

/// A contact's wrapped data key, unless it is past its expiry.
fn read_data_key(txn: &redb::ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    read_unexpired(txn, DATA_KEYS, key)
}

/// The contact's stored data key (its expiry and wrapping) when a claim
/// that read `wrapped` may still write under it: it is the stored
/// wrapping, or the one a rewrap replaced lately. `None` when the key
/// went (erased) or is another.
fn key_in_force(
    txn: &redb::WriteTransaction,
    contact: &str,
    wrapped: &[u8],
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let Some((until, current)) = txn
        .open_table(DATA_KEYS)
        .map_err(corrupt)?
        .get(contact)
        .map_err(corrupt)?
        .map(|v| (v.value().0, v.value().1.to_vec()))
    else {
        return Ok(None);
    };
    if current == wrapped {
        return Ok(Some((until, current)));
    }
    let was = txn
        .open_table(REWRAPPED)
        .map_err(corrupt)?
        .get(contact)
        .map_err(corrupt)?
        .and_then(|v| unexpired(v.value(), now_secs()));
    Ok((was.as_deref() == Some(wrapped)).then_some((until, current)))
}

/// A contact's sealed profile, unless it is past its expiry.
fn read_profile(txn: &redb::ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    read_unexpired(txn, PROFILES, key)
}

/// Adds anonymous counters to today's statistics.
fn count(txn: &redb::WriteTransaction, counts: &[(String, u64)]) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    let day = stats::today();
    let mut t = txn.open_table(STATS).map_err(corrupt)?;
    for (name, n) in counts {
        let cur = t
            .get((day.as_str(), name.as_str()))
            .map_err(corrupt)?
            .map_or(0, |v| v.value());
        t.insert((day.as_str(), name.as_str()), cur + n)
            .map_err(corrupt)?;
    }
    Ok(())
}

fn append_consent(
    txn: &redb::WriteTransaction,
    contact: &str,
    changes: &[ConsentChange],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let q = format!("k:{contact}");
    let mut seqs = txn.open_table(SEQ).map_err(corrupt)?;
    let mut n = seqs
        .get(q.as_str())
        .map_err(corrupt)?
        .map(|v| v.value())
        .unwrap_or(0);
    let mut table = txn.open_table(CONSENT).map_err(corrupt)?;
    for c in changes {
        let bytes = serde_json::to_vec(c).map_err(corrupt)?;
        table
            .insert((q.as_str(), n), bytes.as_slice())
            .map_err(corrupt)?;
        n += 1;
    }
    seqs.insert(q.as_str(), n).map_err(corrupt)?;
    Ok(())
}

/// Merges a delivery record (see [`Delivery::merge`]).
fn merge_delivery(
    txn: &redb::WriteTransaction,
    contact: &str,
    update: &Delivery,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(DELIVERIES).map_err(corrupt)?;
    let mut wamids = txn.open_table(WAMIDS).map_err(corrupt)?;
    let job = if update.job.is_empty() {
        let Some(w) = &update.wamid else {
            return Ok(());
        };
        match wamids.get((contact, w.as_str())).map_err(corrupt)? {
            Some(j) => j.value().to_owned(),
            None => return Ok(()),
        }
    } else {
        update.job.clone()
    };
    let current: Option<Delivery> = table
        .get((contact, job.as_str()))
        .map_err(corrupt)?
        .and_then(|v| serde_json::from_slice(v.value()).ok());
    let record = match current.clone() {
        Some(mut cur) => {
            if !cur.merge(update) {
                return Ok(());
            }
            cur
        }
        None => Delivery {
            job: job.clone(),
            ..update.clone()
        },
    };
    let bytes = serde_json::to_vec(&record).map_err(corrupt)?;
    table
        .insert((contact, job.as_str()), bytes.as_slice())
        .map_err(corrupt)?;
    if let Some(w) = &update.wamid {
        wamids
            .insert((contact, w.as_str()), job.as_str())
            .map_err(corrupt)?;
    }
    if let Some(cid) = super::campaign_of_job(&job) {
        tally_campaign(txn, contact, cid, current.as_ref(), update, now_secs())?;
    }
    Ok(())
}

/// A campaign job's delivery record changed from `old` (`None`: it had
/// none) with `update`: moves the campaign's counters (see
/// [`super::campaign_tally`]), marks the contact's turn done once its job
/// has a record, and once the message went out remembers the campaign as
/// the contact's last for a day (an opt-out then counts for it).
fn tally_campaign(
    txn: &redb::WriteTransaction,
    contact: &str,
    cid: &str,
    old: Option<&Delivery>,
    update: &Delivery,
    now: u64,
) -> Result<(), StoreError> {
    let deltas = super::campaign_tally(old, update);
    {
        let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
        for (name, delta) in &deltas {
            add_count(&mut counts, cid, name, *delta).map_err(corrupt)?;
        }
    }
    if old.is_none() {
        let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
        let queued = marks.get((contact, cid)).map_err(corrupt)?.and_then(|v| {
            let (until, mark) = v.value();
            (Mark::of(mark) == Some(Mark::Queued)).then_some(until)
        });
        if let Some(until) = queued {
            marks
                .insert((contact, cid), (until, Mark::Done.code()))
                .map_err(corrupt)?;
        }
    }
    if deltas.iter().any(|(name, _)| name == "sent") {
        txn.open_table(LAST_CAMPAIGN)
            .map_err(corrupt)?
            .insert(contact, (now + LAST_CAMPAIGN_KEEP, cid))
            .map_err(corrupt)?;
    }
    Ok(())
}

/// Adds `delta` to a campaign's counter (a counter back at 0 is kept, as
/// on Redis).
fn add_count(
    counts: &mut redb::Table<(&str, &str), i64>,
    cid: &str,
    name: &str,
    delta: i64,
) -> Result<(), redb::StorageError> {
    let cur = counts.get((cid, name))?.map_or(0, |v| v.value());
    counts.insert((cid, name), cur + delta)?;
    Ok(())
}

/// A marketing opt-out of `contact` at `now`: counts for the campaign
/// whose message the contact was sent within the last day, once (the
/// campaign is forgotten).
fn attribute_opt_out(
    last: &mut redb::Table<&str, (u64, &str)>,
    counts: &mut redb::Table<(&str, &str), i64>,
    contact: &str,
    now: u64,
) -> Result<(), redb::StorageError> {
    let cid = last.get(contact)?.and_then(|v| {
        let (until, cid) = v.value();
        (until > now).then(|| cid.to_owned())
    });
    if let Some(cid) = cid {
        add_count(counts, &cid, stats::OPT_OUTS, 1)?;
        last.remove(contact)?;
    }
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the folder `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // The folder 0700, its files 0600 (tightened if looser).
        super::private_files::private_dir(path).map_err(StoreError::Unavailable)?;
        let file = path.join("whatsify.redb");
        super::private_files::private_file(&file).map_err(StoreError::Unavailable)?;
        super::private_files::private_files_in(path).map_err(StoreError::Unavailable)?;
        let db = Database::create(file).map_err(|e| {
            StoreError::Unavailable(format!("cannot open store in {}: {e}", path.display()))
        })?;
        {
            let txn = db.begin_write().map_err(corrupt)?;
            txn.open_table(SEEN).map_err(corrupt)?;
            txn.open_table(SEEN_EXPIRY).map_err(corrupt)?;
            txn.open_table(INBOX).map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            txn.open_table(READY).map_err(corrupt)?;
            txn.open_table(OUTBOX_READY).map_err(corrupt)?;
            txn.open_table(SESSIONS).map_err(corrupt)?;
            txn.open_table(TIMERS).map_err(corrupt)?;
            txn.open_table(TIMER_OF).map_err(corrupt)?;
            txn.open_table(OUTBOX_HEAD).map_err(corrupt)?;
            txn.open_table(OUTBOX_DUE).map_err(corrupt)?;
            txn.open_table(OUTBOX_DUE_OF).map_err(corrupt)?;
            txn.open_table(DELIVERIES).map_err(corrupt)?;
            txn.open_table(WAMIDS).map_err(corrupt)?;
            txn.open_table(DEAD).map_err(corrupt)?;
            txn.open_table(DEAD_INDEX).map_err(corrupt)?;
            txn.open_table(WINDOWS).map_err(corrupt)?;
            txn.open_table(CONSENT).map_err(corrupt)?;
            txn.open_table(PROFILES).map_err(corrupt)?;
            txn.open_table(AUDIT).map_err(corrupt)?;
            txn.open_table(HISTORY).map_err(corrupt)?;
            txn.open_table(SUPPRESSED).map_err(corrupt)?;
            txn.open_table(HISTORY_AGE).map_err(corrupt)?;
            txn.open_table(DATA_KEYS).map_err(corrupt)?;
            txn.open_table(REWRAPPED).map_err(corrupt)?;
            txn.open_table(STATS).map_err(corrupt)?;
            txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
            txn.open_table(PINS).map_err(corrupt)?;
            txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
            txn.open_table(OWNERS).map_err(corrupt)?;
            txn.open_table(OWNERS_STALE).map_err(corrupt)?;
            txn.open_table(REMOVALS).map_err(corrupt)?;
            txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
            audit::create_tables(&txn)?;
            links::create_tables(&txn)?;
            docs::create_tables(&txn)?;
            holds::create_tables(&txn)?;
            txn.open_table(audience::CAMPAIGN_MEMBERS)
                .map_err(corrupt)?;
            audience::index_older_audiences(&txn)?;
            txn.commit().map_err(corrupt)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("whatsify-redb-writer".into())
            .spawn(move || writer_loop(&wdb, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(EmbeddedStore {
            db,
            writer: tx,
            leases: Arc::new(Mutex::new(HashMap::new())),
            rates: Arc::new(Mutex::new(HashMap::new())),
            breakers: Arc::new(Mutex::new(HashMap::new())),
            console: Arc::new(Mutex::new(HashMap::new())),
            campaign_leases: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

impl EmbeddedStore {
    /// Runs `f` in a write transaction on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        let job = Job::Other(Box::new(move |txn: &redb::WriteTransaction| {
            let result = f(txn);
            let ok = result.is_ok();
            let finish: Done = Box::new(move |committed: bool| {
                let _ = tx.send(match result {
                    Ok(v) if committed => Ok(v),
                    Ok(_) => Err(StoreError::Unavailable("store transaction failed".into())),
                    Err(e) => Err(e),
                });
            });
            (ok, finish)
        }));
        self.writer.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn holds(leases: &Leases, claim: &Claim) -> bool {
        let map = leases.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(claim.lane, claim.contact.as_str().to_owned()))
            .is_some_and(|(owner, until)| *owner == claim.owner && *until > Instant::now())
    }

    /// A sender is done with a contact: its outbox timer is cleared and,
    /// when nothing is queued, its ready mark.
    fn unready_outbox(txn: &redb::WriteTransaction, c: &Claim) -> Result<(), StoreError> {
        set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, c.contact.as_str(), None)?;
        let q = Queue::Outbox(c.contact.clone()).name();
        let inbox = txn.open_table(INBOX).map_err(corrupt)?;
        if queue_is_empty(&inbox, &q)? {
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(c.contact.as_str())
                .map_err(corrupt)?;
        }
        Ok(())
    }

    fn unlease(leases: &Leases, claim: &Claim) {
        let mut map = leases.lock().unwrap_or_else(|p| p.into_inner());
        let key = (claim.lane, claim.contact.as_str().to_owned());
        if map
            .get(&key)
            .is_some_and(|(owner, _)| *owner == claim.owner)
        {
            map.remove(&key);
        }
    }
}

/// The first and last sequence numbers of a campaign's audience left
/// (`None`: nothing is left). Entries are taken from the front only, so
/// those between are all there.
fn audience_bounds(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &str,
) -> Result<Option<(u64, u64)>, StoreError> {
    let mut range = table.range((id, 0)..=(id, u64::MAX)).map_err(corrupt)?;
    let Some(first) = range.next() else {
        return Ok(None);
    };
    let first = first.map_err(corrupt)?.0.value().1;
    let last = match range.next_back() {
        Some(item) => item.map_err(corrupt)?.0.value().1,
        None => first,
    };
    Ok(Some((first, last)))
}

/// The table of a lane's ready contacts.
fn ready_table(lane: Lane) -> TableDefinition<'static, &'static str, u64> {
    match lane {
        Lane::Inbox => READY,
        Lane::Outbox => OUTBOX_READY,
    }
}

/// A campaign as stored, if there is one.
fn read_campaign(
    table: &impl ReadableTable<&'static str, (u64, &'static str, &'static [u8])>,
    id: &str,
) -> Result<Option<super::StoredCampaign>, StoreError> {
    let Some(v) = table.get(id).map_err(corrupt)? else {
        return Ok(None);
    };
    let (_, status, record) = v.value();
    Ok(Some(super::StoredCampaign {
        id: id.to_owned(),
        record: record.to_vec(),
        status: CampaignStatus::parse(status)
            .ok_or_else(|| corrupt(format!("unknown campaign status {status:?}")))?,
    }))
}

fn seq_of(id: &str) -> Result<u64, StoreError> {
    id.parse()
        .map_err(|_| StoreError::Corrupt(format!("not an entry id: {id}")))
}

fn queue_is_empty(
    table: &redb::Table<(&str, u64), &[u8]>,
    queue: &str,
) -> Result<bool, StoreError> {
    Ok(table
        .range((queue, 0)..=(queue, u64::MAX))
        .map_err(corrupt)?
        .next()
        .is_none())
}
