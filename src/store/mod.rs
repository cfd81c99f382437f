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

    /// Contacts whose inbox has (or may have) pending events, oldest first.
    async fn ready_contacts(&self, limit: usize) -> Result<Vec<ContactKey>, StoreError>;

    /// Checks the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
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
