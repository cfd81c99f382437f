//! The legal holds role: which contacts' data must be kept whatever its
//! age (see [`crate::domain::hold`]). While a contact is held, nothing of
//! theirs expires (profile, data key, message history) and the retention
//! purge passes their history by; the retention job asserts it again on
//! every pass, since a later write sets the usual times to live again.
//! The hold's record itself (reason, reference, waiting erasures) is a
//! small record ([`crate::store::DocStore`]); this role only keeps the
//! data.
//!
//! On Redis: `P{meta}:held` (hash: contact → since, Unix s) and
//! `P{s:N}:c:<contact>:held` (the mark the purge script reads); on the
//! embedded store, the table `held`.

use async_trait::async_trait;

use crate::domain::ContactKey;
use crate::store::StoreError;

/// Keeping a held contact's data.
#[async_trait]
pub trait HoldStore: Send + Sync {
    /// Marks the contact held since `since` (Unix s) and keeps their data
    /// from expiring; again on a held contact, keeps it again.
    async fn hold_data(&self, contact: &ContactKey, since: u64) -> Result<(), StoreError>;

    /// Ends the contact's hold: their data expires again as usual, the
    /// profile and history `keep_secs` after `now` (the data key two days
    /// later), and the purge goes on with their history.
    async fn release_data(
        &self,
        contact: &ContactKey,
        keep_secs: u64,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Every contact held, with since when.
    async fn held(&self) -> Result<Vec<(ContactKey, u64)>, StoreError>;
}
