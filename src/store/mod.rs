//! Storage: one narrow trait, two backends.
//!
//! - [`redis::RedisStore`] for production; several instances share one
//!   Redis (or Redis Cluster: a contact's keys share one hash tag).
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

pub mod embedded;
pub mod redis;

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
    /// The event, sealed (see [`crate::privacy::crypto`]).
    pub sealed: Vec<u8>,
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
    Duplicate,
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
    /// The ready mark's version when claimed (see [`Store::commit`]).
    pub version: Option<String>,
    /// Pending entries of the lane's queue, oldest first.
    pub entries: Vec<StoredEntry>,
    /// The sealed session (inbox lane only).
    pub session: Option<Vec<u8>>,
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

    /// Inbox lane. Atomically, if the claim still holds its lease: removes
    /// the acked entries, writes (or deletes) the session, appends the
    /// outbox jobs (and marks the contact ready for sending). Then drops
    /// the contact from the ready set when its inbox is empty and nothing
    /// arrived since the claim, and releases the lease.
    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError>;

    /// Outbox lane: removes one sent (or dropped) job, if the claim still
    /// holds its lease. `false` when the lease was lost.
    async fn sent(&self, claim: &Claim, id: &str) -> Result<bool, StoreError>;

    /// Contacts whose timer is due at `now` (Unix seconds), earliest first.
    async fn due_timers(&self, now: u64, limit: usize) -> Result<Vec<ContactKey>, StoreError>;

    /// Releases a lease; in the outbox lane, also drops the contact from
    /// the ready set when its outbox is empty and nothing was queued since.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError>;
}

/// Opens the backend the settings choose.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings.backend {
        Backend::Embedded => Arc::new(embedded::EmbeddedStore::open(&settings.path)?),
        Backend::Redis => {
            Arc::new(redis::RedisStore::connect(&settings.redis_url, &settings.key_prefix).await?)
        }
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
