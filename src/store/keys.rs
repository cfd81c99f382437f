//! The keys role: contacts' data keys and the store's pinned identity.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ContactKey;
use crate::store::StoreError;

/// How long a data key's previous wrapping is still accepted from a claim
/// after [`Store::replace_data_key`]: well past any claim's lease.
pub const REWRAPPED_KEEP: Duration = Duration::from_secs(3600);

/// Contacts' data keys and the store's pinned identity.
#[async_trait]
pub trait KeyStore: Send + Sync {
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
}
