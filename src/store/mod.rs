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
pub mod stats;

mod audit;
mod businesses;
mod campaigns;
mod contacts;
mod docs;
mod holds;
mod inbox;
mod keys;
mod lanes;
mod ops;
mod outbox;

pub use audit::AuditStore;
pub use businesses::{ADOPTED_PIN, BusinessStore, PRUNE_GRACE, STALE_TTL};
pub use campaigns::{
    Brief, CAMPAIGN_TTL, CampaignSend, CampaignStore, Dispatched, StoredCampaign, audience_prefix,
    campaign_of_job, campaign_tally,
};
pub use contacts::{ContactStore, Resolved};
pub use docs::{DocStore, open_record, seal_record};
pub use holds::HoldStore;
pub use inbox::{
    Appended, Commit, Committed, DEDUP_TTL, EntryKey, INBOX_TTL, InboxEntry, InboxStore, Queue,
    StoredEntry,
};
pub use keys::{KeyStore, REWRAPPED_KEEP};
pub use lanes::{Claim, Lane, LaneStore, Stranded};
pub use ops::{Breaker, Counts, DailyStats, OpsStore, RateGrant};
pub use outbox::{DeadLetter, Delivery, DeliveryState, Finish, OutboxStore};

use std::sync::Arc;

use crate::config::{Backend, StoreSettings};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// Everything the pipeline needs from storage: every role. A backend
/// implements the role traits; `Arc<dyn Store>` is what the pipeline holds.
/// Call sites bring into scope the roles whose methods they call.
pub trait Store:
    InboxStore
    + LaneStore
    + OutboxStore
    + ContactStore
    + KeyStore
    + CampaignStore
    + AuditStore
    + BusinessStore
    + DocStore
    + HoldStore
    + OpsStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: InboxStore
        + LaneStore
        + OutboxStore
        + ContactStore
        + KeyStore
        + CampaignStore
        + AuditStore
        + DocStore
        + HoldStore
        + BusinessStore
        + OpsStore
        + Send
        + Sync
        + 'static
{
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
