//! Storage: one narrow trait, two backends.
//!
//! - [`redis::RedisStore`] for production; several instances share one
//!   Redis (or Redis Cluster: a contact's keys and its shard's ready sets
//!   share one hash tag, so each write is one script in one slot).
//! - [`embedded::EmbeddedStore`], the default: a redb file under
//!   `store.path`, one process, no server.
//!
//! The durable inbox is a set of queues: one per contact (so a contact's
//! events stay in order and different contacts can be worked in parallel),
//! one for account-level events that concern no contact, and one for
//! quarantined bodies we could not read. Appending is idempotent: each entry
//! carries a de-duplication key, and an entry whose key was seen in the last
//! [`DEDUP_TTL`] is not appended again. The same conformance suite
//! (`tests/api/store.rs`) runs against both backends.

pub mod audit_index;
pub mod embedded;
pub mod lease;
pub mod links;
pub mod private_files;
pub mod redis;
mod redis_audience;
mod redis_conn;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{Backend, StoreSettings};
use crate::domain::ContactKey;

/// How long a de-duplication key is remembered. Meta retries a delivery
/// for up to 7 days; one more day covers clock skew and slow retries.
pub const DEDUP_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// How long an inbox queue is kept after its last append. Meta's own
/// message time-to-live is 30 days; an event older than that is useless.
pub const INBOX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a data key's previous wrapping is still accepted from a claim
/// after [`Store::replace_data_key`]: well past any claim's lease.
pub const REWRAPPED_KEEP: Duration = Duration::from_secs(3600);

/// Which inbox queue an entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Queue {
    /// One contact's events, in arrival order.
    Contact(ContactKey),
    /// One contact's outbound jobs, in sending order.
    Outbox(ContactKey),
    /// Events that concern no contact: account errors, unknown fields.
    System,
    /// Signed bodies we could not parse, kept for an operator.
    Quarantine,
}

impl Queue {
    /// The queue's name in storage keys (also the sealing context).
    pub fn name(&self) -> String {
        match self {
            Queue::Contact(k) => format!("c:{k}"),
            Queue::Outbox(k) => format!("o:{k}"),
            Queue::System => "sys".to_owned(),
            Queue::Quarantine => "quarantine".to_owned(),
        }
    }
}

/// An event to append to the inbox.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub queue: Queue,
    /// De-duplication key: a keyed hash, never a raw message id.
    pub dedup: String,
    /// The event, sealed (see [`crate::crypto::seal`]).
    pub sealed: Vec<u8>,
    /// Consent the event gives or withdraws (STOP, START, WhatsApp's
    /// marketing Stop/Resume): appended to the contact's ledger in the same
    /// atomic write as the entry, and only if the entry is new, so it is on
    /// record before the webhook is acknowledged.
    /// Recorded only when it changes the contact's state for its purpose
    /// (see [`crate::privacy::consent::changes`]).
    pub consent: Option<ConsentChange>,
    /// For an entry whose `consent` is a grant: the event sealed as it
    /// reads when the grant is refused (beyond
    /// [`crate::privacy::consent::GRANTS_PER_DAY`]), stored instead of
    /// `sealed` then, so that the worker answers what was decided.
    pub refused: Option<Vec<u8>>,
    /// The contact's wrapped data key the entry is sealed under (contact
    /// queues only; see [`crate::privacy::keys`]).
    pub key: Option<EntryKey>,
}

/// The data key an inbox entry was sealed under.
#[derive(Debug, Clone)]
pub struct EntryKey {
    /// As stored (wrapped under a master key).
    pub wrapped: Vec<u8>,
    /// A key just made: stored when the contact has none. Otherwise it must
    /// be the one stored.
    pub fresh: bool,
    /// How long the key is kept after the contact's last message.
    pub ttl: Duration,
}

/// An entry as read back from the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Position in its queue; increasing in append order.
    pub id: String,
    pub sealed: Vec<u8>,
}

/// What happened to one entry given to [`Store::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New,
    /// Stored, but the consent it carried changes nothing (the contact's
    /// latest entry for that purpose already says the same: a second
    /// STOP), so none was recorded, counted or attributed.
    NewSameConsent,
    /// Stored (as [`InboxEntry::refused`]), but the grant it carried is
    /// beyond [`crate::privacy::consent::GRANTS_PER_DAY`], so none was
    /// recorded, counted or attributed.
    NewGrantRefused,
    Duplicate,
    /// Not stored: the contact's data key is not the one the entry was
    /// sealed under (it was erased, or made elsewhere). Seal it again under
    /// the stored key ([`Store::data_key`]) or a fresh one, and retry.
    KeyMismatch,
}

impl Appended {
    /// The entry was stored (whether or not its consent was recorded).
    pub fn is_new(self) -> bool {
        matches!(
            self,
            Appended::New | Appended::NewSameConsent | Appended::NewGrantRefused
        )
    }
}

/// The two pipelines that take contacts one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Workers: inbox → engine → outbox.
    Inbox,
    /// Senders: outbox → Graph API.
    Outbox,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Inbox => "inbox",
            Lane::Outbox => "outbox",
        }
    }
}

/// A worker's exclusive hold on one contact, and what it needs to work:
/// the pending inbox entries (oldest first) and the sealed session.
#[derive(Debug, Clone)]
pub struct Claim {
    pub lane: Lane,
    pub contact: ContactKey,
    /// The lease token; only its holder may commit.
    pub owner: String,
    /// Pending entries of the lane's queue, oldest first.
    pub entries: Vec<StoredEntry>,
    /// The sealed session (inbox lane only).
    pub session: Option<Vec<u8>>,
    /// Outbox lane: the retry state of the queue's first job, as the last
    /// [`Store::defer`] wrote it (cleared when that job is finished).
    pub head: Option<Vec<u8>>,
    /// Inbox lane: the contact's sealed profile (outlives sessions).
    pub profile: Option<Vec<u8>>,
    /// The contact's wrapped data key, if it has one.
    pub data_key: Option<Vec<u8>>,
}

/// What a worker writes once it has handled some of a claim's entries.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The handled inbox entries (their ids).
    pub acked: Vec<String>,
    /// The new sealed session; `None` deletes it.
    pub session: Option<Vec<u8>>,
    pub session_ttl: Duration,
    /// Sealed outbound jobs, appended in order to the contact's outbox.
    pub outbox: Vec<Vec<u8>>,
    /// When the session's next timeout is due (Unix seconds); `None`
    /// cancels the contact's timer.
    pub wake_at: Option<u64>,
    /// The customer wrote to this business number at this time (Unix s):
    /// opens or extends the 24-hour customer service window.
    pub window: Option<(String, u64)>,
    /// Delivery updates from status webhooks, merged monotonically.
    pub deliveries: Vec<Delivery>,
    /// Consent given or withdrawn, appended to the contact's ledger.
    pub consent: Vec<ConsentChange>,
    /// The contact's new sealed profile; `None` leaves it as it is.
    pub profile: Option<Vec<u8>>,
    /// Sealed message history entries (what the customer sent, what we
    /// queued for them), appended to the contact's history.
    pub history: Vec<Vec<u8>>,
    /// How long a profile (and the history, after its last entry) is kept
    /// after its last write (`privacy.retention_days`).
    pub profile_ttl: Duration,
    /// Anonymous counters to add to today's statistics (see [`stats`]);
    /// opt-ins and opt-outs are counted from `consent` by the store.
    pub stats: Counts,
}

/// One entry of a contact's consent ledger (append-only: the current
/// state of a purpose is its latest entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsentChange {
    /// What the consent is for (`marketing`, …).
    pub purpose: String,
    pub granted: bool,
    /// When (Unix seconds).
    pub at: u64,
    /// How we learned it: `keyword` (STOP, START… typed), `button` (the
    /// "Stop promotions" quick reply), `flow` (a flow's opt-in or opt-out
    /// step), `whatsapp:user_preferences` (WhatsApp's Stop/Resume),
    /// `meta:131050` (Meta said the customer stopped marketing messages),
    /// `admin`.
    pub source: String,
    /// The privacy policy in force (`privacy.policy_version`).
    pub policy_version: String,
    /// What shows it: a keyed hash of the customer's message id (or of
    /// the webhook event) that carried the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// Where an outbound message stands. The order of the variants is the
/// order of progress: an update never moves a message back, and the final
/// states never change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Meta accepted the request (the synchronous answer).
    Accepted,
    Sent,
    Delivered,
    Read,
    /// A voice message was played.
    Played,
    /// Meta reported a failure (a status webhook or a permanent error).
    Failed,
    /// Not sent: the 24-hour window had closed.
    OutsideWindow,
    /// Not sent: it waited longer than its useful life.
    Expired,
    /// Not sent: every attempt failed; moved to the dead letters.
    Dead,
    /// Not sent: the consent it needs (marketing) was not given, or was
    /// withdrawn before it could go.
    NoConsent,
    /// Not sent: its campaign was cancelled first.
    Cancelled,
}

impl DeliveryState {
    /// Final states never change again.
    pub fn is_final(self) -> bool {
        self >= DeliveryState::Failed
    }

    /// The state as serialized (`no_consent`, …).
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
            DeliveryState::Played => "played",
            DeliveryState::Failed => "failed",
            DeliveryState::OutsideWindow => "outside_window",
            DeliveryState::Expired => "expired",
            DeliveryState::Dead => "dead",
            DeliveryState::NoConsent => "no_consent",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// The rank used to merge updates: higher wins; final states win over
    /// everything and are never replaced.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryState::Accepted => 1,
            DeliveryState::Sent => 2,
            DeliveryState::Delivered => 3,
            DeliveryState::Read => 4,
            DeliveryState::Played => 5,
            _ => 10,
        }
    }
}

/// What the store keeps about one outbound message: its state, never its
/// content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// Our job id (sent as `biz_opaque_callback_data`); empty when a
    /// status update names only the wamid.
    pub job: String,
    pub state: DeliveryState,
    /// When the state was reached (Unix seconds).
    pub at: u64,
    /// A keyed hash of Meta's message id (wamids encode phone numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    /// The message kind (`text`, `template`, …), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Meta's error code, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Why, in words that hold no personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made (for dead letters and failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Delivery {
    /// Merges `update` into `self` (the stored record): the state moves
    /// only forward and a final state is kept; fields the update lacks
    /// are kept. Returns whether anything changed.
    pub fn merge(&mut self, update: &Delivery) -> bool {
        if self.state.is_final() || update.state.rank() <= self.state.rank() {
            return false;
        }
        self.state = update.state;
        self.at = update.at;
        if update.wamid.is_some() {
            self.wamid.clone_from(&update.wamid);
        }
        if update.kind.is_some() {
            self.kind.clone_from(&update.kind);
        }
        if update.code.is_some() {
            self.code = update.code;
        }
        if update.reason.is_some() {
            self.reason.clone_from(&update.reason);
        }
        if update.attempts.is_some() {
            self.attempts = update.attempts;
        }
        true
    }
}

/// How a sender is done with an outbox job.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The job's record (accepted, failed, outside_window, expired, dead).
    pub record: Delivery,
    /// For a dead letter: the sealed job and its last error, kept for an
    /// operator.
    pub dead_letter: Option<Vec<u8>>,
    /// Consent Meta's answer tells us was withdrawn (131050).
    pub consent: Option<ConsentChange>,
    /// Earlier jobs of the same claim that were sent but are removed only
    /// now: read receipts, whose repetition after a crash is harmless
    /// (marking a message read twice changes nothing), so their removal
    /// rides on the next write instead of costing one of its own.
    pub also: Vec<String>,
    /// This is the claim's last job: release the claim in the same write
    /// (as [`Store::release`] does), if the lease is still held.
    pub release: bool,
    /// Anonymous counters to add to today's statistics (an opt-out in
    /// `consent` is counted by the store).
    pub stats: Counts,
}

impl Finish {
    /// A plain finish: the record, nothing else.
    pub fn record(record: Delivery) -> Finish {
        Finish {
            record,
            dead_letter: None,
            consent: None,
            also: Vec::new(),
            release: false,
            stats: Vec::new(),
        }
    }
}

/// The answer of [`Store::take_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// Slots taken (at most the number asked for); 0 when none is free.
    pub granted: u32,
    /// With nothing granted: milliseconds until one slot is free.
    pub wait_ms: u64,
}

/// A dead letter as listed for an operator.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub contact: ContactKey,
    pub entry: StoredEntry,
}

/// A number's sending is paused (a circuit breaker, shared by every
/// instance on the store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Breaker {
    /// Why: the Meta error code and a short reason.
    pub code: i64,
    pub reason: String,
    /// Since when (Unix seconds).
    pub since: u64,
    /// When the next probe may be tried (Unix seconds).
    pub probe_at: u64,
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Written; this many inbox entries remain for the contact.
    Done { inbox_left: u64 },
    /// The lease expired and someone else may hold the contact: nothing
    /// was written (the entries will be handled again).
    LeaseLost,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// The operations the pipeline needs from storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends each entry unless its de-duplication key was seen; returns,
    /// in order, whether each one was new. An entry is durable when this
    /// returns `Ok`. Each entry is atomic (seen-mark and append together);
    /// on `Err` some entries may be stored, and retrying is safe.
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError>;

    /// Up to `limit` entries of a queue, oldest first.
    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError>;

    /// Contacts whose inbox (or outbox) has, or may have, pending entries.
    async fn ready_contacts(&self, lane: Lane, limit: usize)
    -> Result<Vec<ContactKey>, StoreError>;

    /// What a sweep of `lane` finds: a sample of up to `limit` ready
    /// contacts, and up to `limit` contacts whose timer is due at `now`
    /// (as [`Store::ready_contacts`] and [`Store::due_timers`]).
    async fn sweep(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Vec<ContactKey>), StoreError> {
        Ok((
            self.ready_contacts(lane, limit).await?,
            self.due_timers(lane, now, limit).await?,
        ))
    }

    /// Checks the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the contact in `lane` unless another worker holds it there,
    /// and reads up to `limit` pending entries (and, for the inbox, the
    /// session). `None`: held elsewhere. A lease that is not released
    /// (a crash) expires after `lease`.
    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError>;

    /// Extends each lease of `held` that its holder still has to `lease`
    /// from now (atomically per lease, and only when the token matches);
    /// answers, in order, whether each was still held.
    async fn renew(&self, held: &[lease::Held], lease: Duration) -> Result<Vec<bool>, StoreError>;

    /// Inbox lane. Atomically, if the claim still holds its lease: removes
    /// the acked entries, writes (or deletes) the session, appends the
    /// outbox jobs (and marks the contact ready for sending), sets or
    /// cancels the session's timer, drops the contact from the ready set
    /// when its inbox is empty, and releases the lease.
    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError>;

    /// Outbox lane: atomically removes one job (and `also`), clears the
    /// head's retry state, writes the job's delivery record (merged), for
    /// a dead letter keeps it in the dead letters, and with `release`
    /// releases the claim. This happens even when the
    /// lease was lost (the job *was* sent, or given up: sending it again
    /// would be wrong); the answer says whether the lease is still held.
    /// Because the removal and the record are one write, a job still in
    /// the outbox was never recorded as sent: that is the sent-marker.
    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError>;

    /// Outbox lane: the head job must wait. Writes its retry state (when
    /// given), wakes the contact's outbox at `until` (Unix seconds) and
    /// releases the claim. Nothing is written if the lease was lost.
    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError>;

    /// Outbox lane: writes the head job's retry state while the claim still
    /// holds its lease (nothing else changes); answers whether it did.
    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError>;

    /// Contacts whose timer in `lane` is due at `now` (Unix seconds),
    /// earliest first: session timeouts (inbox) or deferred sends (outbox).
    async fn due_timers(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError>;

    /// How many contacts have pending entries in `lane` (for the outbox,
    /// ready or waiting to be retried), and since when (Unix ms) the oldest
    /// ready one has waited (for `GET /metrics`).
    async fn backlog(&self, lane: Lane) -> Result<(u64, Option<u64>), StoreError>;

    /// Makes every deferred outbox due now (a paused number resumed).
    async fn wake_deferred(&self) -> Result<(), StoreError>;

    /// Releases a lease; in the outbox lane, also drops the contact from
    /// the ready set when its outbox is empty, and clears its outbox timer.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError>;

    /// The audit log's last entry: (sequence number, hash); (0,
    /// [`crate::privacy::audit::GENESIS`]) when empty.
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;

    /// Appends `entry` if it follows the current head (its `seq` is the
    /// next one and its `prev` the head's hash); false when another
    /// writer got there first (nothing written).
    async fn audit_append(&self, entry: &crate::privacy::audit::Entry) -> Result<bool, StoreError>;

    /// Up to `limit` audit entries from sequence number `from`, in order.
    async fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::privacy::audit::Entry>, StoreError>;

    /// Up to `limit` audit entries with a sequence number below `before`
    /// (from the newest when `None`), newest first.
    async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::privacy::audit::Entry>, StoreError>;

    /// Appends a run of entries, each as [`Store::audit_append`] would, in
    /// one round trip: for seeding or restoring a log (the application
    /// appends one entry at a time). False from the first entry that does
    /// not follow (it and those after it are not written).
    async fn audit_append_run(
        &self,
        entries: &[crate::privacy::audit::Entry],
    ) -> Result<bool, StoreError>;

    /// The request index ([`audit_index`]), kept by the appends: the
    /// entries of every open privacy request, and of the most recently
    /// closed ones.
    async fn audit_requests(&self) -> Result<audit_index::Requests, StoreError>;

    /// Replaces the request index with `index`, rebuilt from the log up to
    /// entry `through`, and marks it complete; false (nothing written) when
    /// the head is no longer `through`.
    async fn audit_requests_reset(
        &self,
        through: u64,
        index: &audit_index::Replay,
    ) -> Result<bool, StoreError>;

    /// Moves the group of `request` (an open request that lapsed) to the
    /// closed ones, if `request` is still its newest entry and nothing in
    /// it was confirmed; true when moved.
    async fn audit_request_lapsed(
        &self,
        request: &crate::privacy::audit::Entry,
    ) -> Result<bool, StoreError>;

    /// Erases everything kept about a contact: their entries in the
    /// audiences of campaigns not dispatched yet (counted as
    /// `skipped:suppressed`), queued and pending entries,
    /// session, profile, history, consent ledger, delivery records, windows,
    /// dead letters, retry state, leases, its data key and its places in
    /// the shard's
    /// sets; and puts the contact's pseudonymous key on the suppression
    /// list with the time (Unix s). (Redis de-duplication marks, which hold
    /// no personal data, expire on their own within 8 days.)
    async fn erase(&self, contact: &ContactKey, at: u64) -> Result<(), StoreError>;

    /// Stores `value` under `name` unless a value is there; answers the
    /// value in force. The store's identity (the id of the pseudonym key
    /// its contacts are named under) is pinned this way.
    async fn pin(&self, name: &str, value: &str) -> Result<String, StoreError>;

    /// The contact's wrapped data key, if it has one.
    async fn data_key(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `wrapped` as the contact's data key, kept `ttl`, unless it
    /// has one; answers the key in force (the stored one, or `wrapped`).
    async fn create_data_key(
        &self,
        contact: &ContactKey,
        wrapped: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, StoreError>;

    /// A page of stored data keys, from `cursor` (`None`: the start);
    /// answers the keys and the cursor of the next page (`None`: done).
    async fn data_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(ContactKey, Vec<u8>)>, Option<String>), StoreError>;

    /// Replaces a contact's data key by `new` if it is still `old` (the
    /// same key rewrapped); answers whether it did. For [`REWRAPPED_KEEP`]
    /// afterwards, a claim taken under `old` still commits and finishes:
    /// a rewrap changes the wrapping, not the key its entries are sealed
    /// under.
    async fn replace_data_key(
        &self,
        contact: &ContactKey,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;

    /// The anonymous statistics of `days` (YYYY-MM-DD): per day, each
    /// counter's total across the store.
    async fn stats(&self, days: &[String]) -> Result<DailyStats, StoreError>;

    /// When the contact was erased (their key is on the suppression list).
    async fn suppressed(&self, contact: &ContactKey) -> Result<Option<u64>, StoreError>;

    /// Removes what is past its time to live at `now` (Unix s): delivery
    /// records and dead letters (30 days), windows (2 days), profiles,
    /// sessions and data keys past their expiry, statistics older than
    /// [`stats::KEEP_DAYS`]. Answers how many records went. Redis expires
    /// its keys itself: nothing to do there.
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let _ = now;
        Ok(0)
    }

    /// Removes message history entries written before `before_ms` (Unix
    /// ms), for at most `limit` contacts; answers how many contacts it
    /// looked at (0: nothing older is left).
    async fn purge_history(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError>;

    /// The contact's sealed session, if a conversation is under way.
    async fn session(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` of the contact's sealed history entries, oldest
    /// first, each with its time (Unix ms).
    async fn history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The contact's last `limit` sealed history entries (the newest),
    /// oldest first, each with its time (Unix ms): reads only those.
    async fn recent_history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The contact's sealed profile, if any (and not past its time).
    async fn profile(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// The delivery records of a contact's messages (newest last).
    async fn deliveries(&self, contact: &ContactKey) -> Result<Vec<Delivery>, StoreError>;

    /// The contact's consent ledger, oldest first.
    async fn consent(&self, contact: &ContactKey) -> Result<Vec<ConsentChange>, StoreError>;

    /// Appends a consent change to the contact's ledger on its own (one
    /// recorded by the support team), with its opt-in or opt-out counter.
    async fn append_consent(
        &self,
        contact: &ContactKey,
        change: ConsentChange,
    ) -> Result<(), StoreError>;

    /// The last inbound time (Unix s) per business number: the 24-hour
    /// customer service windows.
    async fn windows(&self, contact: &ContactKey) -> Result<Vec<(String, u64)>, StoreError>;

    /// Up to `limit` dead letters, oldest contacts first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;

    /// A rate limit shared by every instance (GCRA): one slot per
    /// `interval_us` microseconds, bursts of `burst`. Takes as many of
    /// `want` slots as are free now (at least one), or takes nothing and
    /// answers how many milliseconds to wait for one (rounded up).
    async fn take_rate(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
        want: u32,
    ) -> Result<RateGrant, StoreError>;

    /// Pushes `key`'s rate limit back so that nothing passes for `ms`
    /// (Meta said to slow down).
    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError>;

    /// Keeps a console session's (sealed) record under `key` until
    /// `expires_at` (Unix s), replacing what was there. Shared by every
    /// instance on the same store, so an operator stays signed in
    /// whichever instance answers.
    async fn put_console_session(
        &self,
        key: &str,
        record: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError>;

    /// A console session's record, unless it has expired by `now` (Unix s)
    /// or was ended.
    async fn console_session(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Ends a console session.
    async fn end_console_session(&self, key: &str) -> Result<(), StoreError>;

    /// Ends every console session (the admin credential changed).
    async fn end_console_sessions(&self) -> Result<(), StoreError>;

    /// Opens (or keeps open) the breaker of a business number.
    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError>;

    /// Closes a number's breaker; `None` closes every one.
    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError>;

    /// The open breakers.
    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError>;

    /// Takes the right to probe a paused number: true for exactly one
    /// caller once `probe_at` has passed, and moves `probe_at` to `next`.
    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError>;

    /// Stores a new campaign (status `scheduled`) and its audience, in
    /// order: sealed entries the dispatcher takes from the front.
    async fn create_campaign(
        &self,
        id: &str,
        record: &[u8],
        audience: Vec<Vec<u8>>,
    ) -> Result<(), StoreError>;

    /// Every campaign, oldest first.
    async fn campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError>;

    /// The campaigns still to dispatch (`scheduled` or `running`), oldest
    /// first: what the dispatchers look at several times a second.
    async fn active_campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError> {
        Ok(self
            .campaigns()
            .await?
            .into_iter()
            .filter(|c| crate::campaign::is_active(&c.status))
            .collect())
    }

    /// One campaign.
    async fn campaign(&self, id: &str) -> Result<Option<StoredCampaign>, StoreError>;

    /// Moves a campaign's status to `to` if it is one of `from`; answers
    /// whether it did. Moving to `cancelled` drops what is left of the
    /// audience.
    async fn set_campaign_status(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StoreError>;

    /// Takes (or keeps) the right to dispatch a campaign for `lease`:
    /// true for one owner at a time.
    async fn campaign_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` audience entries from the front of what is left.
    async fn campaign_audience(&self, id: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Queues each job (or counts each skip) unless the contact already had
    /// its turn in this campaign, each atomically with that mark and the
    /// campaign's counters (`dispatched`, and `queued` or
    /// `skipped:<reason>`); then drops the first `consumed` audience
    /// entries, unless a send came back [`Dispatched::KeyMismatch`] or
    /// `owner` no longer holds the campaign's lease (a dispatcher that
    /// stalled past it drops nothing: the next holder read the same
    /// entries, and drops them itself). Answers, in order, what was done,
    /// and how many entries are left.
    async fn campaign_dispatch(
        &self,
        id: &str,
        owner: &str,
        sends: Vec<CampaignSend>,
        consumed: usize,
        now_ms: u64,
    ) -> Result<(Vec<Dispatched>, u64), StoreError>;

    /// The audience entries left to dispatch.
    async fn campaign_left(&self, id: &str) -> Result<u64, StoreError>;

    /// A campaign's counters, summed over the store (see
    /// [`campaign_tally`], plus `queued`, `skipped:<reason>` and
    /// `opt_outs`).
    async fn campaign_counts(
        &self,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError>;

    /// What the dispatcher needs about each contact, in order.
    async fn briefs(&self, contacts: &[ContactKey]) -> Result<Vec<Brief>, StoreError>;

    /// Appends like [`Store::append`] and records `links` like
    /// [`Store::link_contacts`] (without answering which link holds: the
    /// first one does), in one round trip where the backend can.
    async fn append_linked(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError> {
        if !links.is_empty() {
            self.link_contacts(links).await?;
        }
        self.append(entries).await
    }

    /// Contact links (one customer known by a wa_id and by a
    /// business-scoped user id; see [`links`]): for each key, in order,
    /// the canonical contact it is an alias of, and whether it has a data
    /// key of its own. One round trip.
    async fn resolve_contacts(&self, keys: &[ContactKey]) -> Result<Vec<Resolved>, StoreError>;

    /// Records each `(alias, canonical)` link unless the alias is linked
    /// already, and indexes it under the canonical contact; answers, in
    /// order, the canonical contact in force for each alias.
    async fn link_contacts(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError>;

    /// The aliases linked to `canonical` (only those whose link still
    /// names it).
    async fn aliases(&self, canonical: &ContactKey) -> Result<Vec<ContactKey>, StoreError>;

    /// Drops every link to `canonical` and its index of them.
    async fn unlink(&self, canonical: &ContactKey) -> Result<(), StoreError>;

    /// Erases a contact with every id it is known by: each alias (its
    /// data, if any, and onto the suppression list), then the contact
    /// itself, then the links (last, so that erasing again after a crash
    /// finds them). Answers the aliases erased.
    async fn erase_contact(
        &self,
        contact: &ContactKey,
        at: u64,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let aliases = self.aliases(contact).await?;
        for alias in &aliases {
            self.erase(alias, at).await?;
        }
        self.erase(contact, at).await?;
        self.unlink(contact).await?;
        Ok(aliases)
    }
}

/// What [`Store::resolve_contacts`] knows about a contact key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical contact this key is an alias of.
    pub link: Option<ContactKey>,
    /// The key has a data key of its own (the contact was seen).
    pub known: bool,
}

/// One audience member, as the campaign dispatcher hands it to the store.
#[derive(Debug, Clone)]
pub struct CampaignSend {
    pub contact: ContactKey,
    /// The sealed job to queue in the contact's outbox, or why the contact
    /// is skipped (`no_consent`, `opted_out`, `suppressed`, `unknown`, …).
    pub job: Result<Vec<u8>, String>,
    /// With a job: the contact's data key it is sealed under. A fresh one
    /// is stored unless the contact has one; otherwise it must be the one
    /// stored, or nothing is done ([`Dispatched::KeyMismatch`]).
    pub key: Option<EntryKey>,
    /// How long the contact's campaign marks (and a fresh data key) are
    /// kept: as long as its data key.
    pub ttl: Duration,
}

/// What [`Store::campaign_dispatch`] did with one [`CampaignSend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// Queued (or counted as skipped) now.
    Done,
    /// This contact already had its turn in this campaign: nothing done.
    Already,
    /// Not done: the contact's data key changed (made elsewhere, or the
    /// contact was erased). Read it again and retry.
    KeyMismatch,
}

/// What the campaign dispatcher reads about an audience member.
#[derive(Debug, Clone, Default)]
pub struct Brief {
    pub data_key: Option<Vec<u8>>,
    pub profile: Option<Vec<u8>>,
    /// The sealed session (its variables), if a conversation is under way.
    pub session: Option<Vec<u8>>,
    pub consent: Vec<ConsentChange>,
    pub suppressed: Option<u64>,
}

/// A campaign as stored: its definition (JSON, see
/// [`crate::campaign::Campaign`]) and its status, kept apart so a status
/// change is a compare-and-set.
#[derive(Debug, Clone)]
pub struct StoredCampaign {
    pub id: String,
    pub record: Vec<u8>,
    pub status: String,
}

/// How a campaign's audience entry starts: the contact's pseudonymous key
/// and `|`, then the sealed entry. Both backends index the audience by
/// that key, so an erasure removes the contact's entry from each campaign
/// not dispatched yet without reading the audience; a contact is in an
/// audience once (a later entry of the same contact is not stored).
pub fn audience_prefix(contact: &ContactKey) -> Vec<u8> {
    format!("{contact}|").into_bytes()
}

/// How campaign jobs are named (`cmp.<campaign id>.<n>`): the store reads
/// the campaign from a delivery record's job id to count its progress.
pub fn campaign_of_job(job: &str) -> Option<&str> {
    let rest = job.strip_prefix("cmp.")?;
    let (id, _) = rest.split_once('.')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// How long a campaign's counters and its contacts' marks are kept after
/// their last change.
pub const CAMPAIGN_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// The campaign counters a delivery record's change moves (the same rules
/// as the Redis store's Lua `tally`): the first record of a queued job
/// takes it off `queued`; reaching accepted, delivered and read counts
/// `sent`, `delivered` and `read` once each; a final state counts
/// `skipped:<reason>` (consent missing at the moment of sending),
/// `cancelled`, or `failed:<code>` (`failed:<state>` with no code).
pub fn campaign_tally(old: Option<&Delivery>, new: &Delivery) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let old_rank = old.map(|d| d.state.rank()).unwrap_or(0);
    let new_rank = new.state.rank();
    if old.is_none() {
        out.push(("queued".to_owned(), -1));
    }
    if new_rank >= 10 {
        let field = match new.state {
            DeliveryState::NoConsent => {
                format!("skipped:{}", new.reason.as_deref().unwrap_or("no_consent"))
            }
            DeliveryState::Cancelled => "cancelled".to_owned(),
            other => match new.code {
                Some(code) => format!("failed:{code}"),
                None => format!("failed:{}", other.name()),
            },
        };
        out.push((field, 1));
    } else {
        for (threshold, name) in [(1, "sent"), (3, "delivered"), (4, "read")] {
            if old_rank < threshold && new_rank >= threshold {
                out.push((name.to_owned(), 1));
            }
        }
    }
    out
}

/// Claims a worker or sender could not release because the store failed:
/// released as soon as it answers again (otherwise their contacts would
/// wait for their leases to expire).
#[derive(Default)]
pub struct Stranded(std::sync::Mutex<Vec<Claim>>);

impl Stranded {
    /// Keeps a claim to release later.
    pub fn keep(&self, claim: Claim) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(claim);
    }

    /// Releases the claims kept; those the store still refuses stay.
    pub async fn release_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = None;
        let mut left = Vec::new();
        for claim in kept {
            if failed.is_none() {
                match store.release(&claim).await {
                    Ok(()) => continue,
                    Err(e) => failed = Some(e),
                }
            }
            left.push(claim);
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(left);
        failed.map_or(Ok(()), Err)
    }
}

/// The CA certificates (PEM) of `store.redis_ca_file`, when set.
fn redis_ca(settings: &StoreSettings) -> Result<Option<Vec<u8>>, StoreError> {
    settings
        .redis_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot read store.redis_ca_file {}: {e}",
                    path.display()
                ))
            })
        })
        .transpose()
}

/// Opens the backend the settings choose.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings.backend {
        Backend::Embedded => Arc::new(embedded::EmbeddedStore::open(&settings.path)?),
        Backend::Redis => {
            let ca = redis_ca(settings)?;
            Arc::new(
                redis::RedisStore::connect(&settings.redis_url, &settings.key_prefix, ca).await?,
            )
        }
        Backend::RedisCluster => {
            let ca = redis_ca(settings)?;
            Arc::new(
                redis::RedisStore::connect_cluster(&settings.redis_url, &settings.key_prefix, ca)
                    .await?,
            )
        }
    })
}

/// Seconds since the Unix epoch.
/// Anonymous counters: (name, amount). Names are fixed words or a flow's
/// and step's ids, never anything about a contact.
pub type Counts = Vec<(String, u64)>;

/// Statistics per day (YYYY-MM-DD): each counter's total.
pub type DailyStats = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

/// The anonymous daily statistics whatsify keeps (`GET /admin/stats`),
/// which outlive every contact's data: per UTC day, messages in and out,
/// opt-outs and opt-ins, exports, erasures, and the flow steps run
/// (`step:<flow>/<step>`). They name no contact.
pub mod stats {
    pub const MESSAGES_IN: &str = "messages_in";
    pub const MESSAGES_OUT: &str = "messages_out";
    pub const OPT_OUTS: &str = "opt_outs";
    pub const OPT_INS: &str = "opt_ins";
    pub const EXPORTS: &str = "exports";
    pub const ERASURES: &str = "erasures";
    /// How long a day's counters are kept (Redis: the hash's TTL; the
    /// embedded store drops older days in the retention pass).
    pub const KEEP_DAYS: u64 = 400;

    /// The counter a consent ledger entry adds, if any.
    pub fn of_consent(c: &super::ConsentChange) -> Option<&'static str> {
        (c.purpose == crate::privacy::consent::MARKETING).then_some(if c.granted {
            OPT_INS
        } else {
            OPT_OUTS
        })
    }

    /// `counts` and the opt-ins and opt-outs of `consent`, merged by name.
    pub fn with_consent<'a>(
        counts: &[(String, u64)],
        consent: impl Iterator<Item = &'a super::ConsentChange>,
    ) -> Vec<(String, u64)> {
        let mut out: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for (name, n) in counts {
            *out.entry(name.clone()).or_default() += n;
        }
        for name in consent.filter_map(of_consent) {
            *out.entry(name.to_owned()).or_default() += 1;
        }
        out.into_iter().collect()
    }

    /// The counter of a flow step.
    pub fn step(flow: &str, step: &str) -> String {
        format!("step:{flow}/{step}")
    }

    /// The UTC day (YYYY-MM-DD) of a Unix time in seconds.
    pub fn day(secs: u64) -> String {
        let days = (secs / 86_400) as i64;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// The number of days since 1970-01-01 of a day written YYYY-MM-DD.
    pub fn parse_day(text: &str) -> Option<u64> {
        let mut parts = text.splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let d: i64 = parts.next()?.parse().ok()?;
        if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
            return None;
        }
        // Howard Hinnant's days-from-civil algorithm.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
        // 2026-02-30 and the like do not round-trip.
        (day(days * 86_400) == text).then_some(days)
    }

    /// Today (UTC).
    pub fn today() -> String {
        day(super::now_secs())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn days_are_utc_calendar_dates() {
            assert_eq!(super::day(0), "1970-01-01");
            assert_eq!(super::day(951_782_400), "2000-02-29");
            assert_eq!(super::day(1_795_996_800 - 1), "2026-11-29");
            assert_eq!(super::day(1_795_996_800), "2026-11-30");
            assert_eq!(super::parse_day("2026-11-30"), Some(1_795_996_800 / 86_400));
            assert_eq!(super::parse_day("1970-01-01"), Some(0));
            for bad in ["2026-02-30", "2026-13-01", "26-11-30", "2026-1-30", "x"] {
                assert_eq!(super::parse_day(bad), None, "{bad}");
            }
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod merge_tests {
    use super::{Delivery, DeliveryState, campaign_tally};
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = DeliveryState> {
        prop::sample::select(vec![
            DeliveryState::Accepted,
            DeliveryState::Sent,
            DeliveryState::Delivered,
            DeliveryState::Read,
            DeliveryState::Played,
            DeliveryState::Failed,
            DeliveryState::OutsideWindow,
            DeliveryState::Expired,
            DeliveryState::Dead,
            DeliveryState::NoConsent,
            DeliveryState::Cancelled,
        ])
    }

    fn update(state: DeliveryState, at: u64) -> Delivery {
        Delivery {
            job: "cmp.c1.j".into(),
            state,
            at,
            wamid: None,
            kind: None,
            code: (state == DeliveryState::Failed).then_some(131_026),
            reason: None,
            attempts: None,
        }
    }

    proptest! {
        /// Status updates in any order and with any repeats: a record's
        /// state only moves forward, a final state never changes, the end
        /// state is the first final one (else the furthest), and the
        /// campaign counters count each milestone at most once.
        #[test]
        fn status_updates_are_monotonic(states in prop::collection::vec(state(), 1..12)) {
            let mut stored: Option<Delivery> = None;
            let mut counted: std::collections::BTreeMap<String, i64> = Default::default();
            for (i, s) in states.iter().enumerate() {
                let u = update(*s, i as u64);
                let before = stored.clone();
                let changed = match stored.as_mut() {
                    None => {
                        stored = Some(u.clone());
                        true
                    }
                    Some(d) => d.merge(&u),
                };
                if changed {
                    for (name, n) in campaign_tally(before.as_ref(), &u) {
                        *counted.entry(name).or_default() += n;
                    }
                }
                let now = stored.as_ref().map(|d| d.state).unwrap_or(*s);
                if let Some(b) = &before {
                    prop_assert!(now.rank() >= b.state.rank());
                    if b.state.is_final() {
                        prop_assert_eq!(now, b.state);
                    }
                }
            }
            let end = stored.map(|d| d.state);
            let first_final = states.iter().find(|s| s.is_final()).copied();
            let expected = first_final.or_else(|| states.iter().max_by_key(|s| s.rank()).copied());
            prop_assert_eq!(end, expected);
            prop_assert_eq!(counted.get("queued").copied(), Some(-1));
            for milestone in ["sent", "delivered", "read"] {
                prop_assert!(counted.get(milestone).copied().unwrap_or(0) <= 1);
            }
            let finals: i64 = counted
                .iter()
                .filter(|(k, _)| k.starts_with("failed:") || k.starts_with("skipped:") || *k == "cancelled")
                .map(|(_, v)| *v)
                .sum();
            prop_assert!(finals <= 1);
        }
    }
}
