//! The audit role: the audit log and its request index.

use async_trait::async_trait;

use crate::store::{StoreError, audit_index};

/// The audit log (a hash chain) and its index of privacy requests.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The audit log's last entry: (sequence number, hash); (0,
    /// [`crate::domain::audit::GENESIS`]) when empty.
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;

    /// Appends `entry` if it follows the current head (its `seq` is the
    /// next one and its `prev` the head's hash); false when another
    /// writer got there first (nothing written).
    async fn audit_append(&self, entry: &crate::domain::audit::Entry) -> Result<bool, StoreError>;

    /// Up to `limit` audit entries from sequence number `from`, in order.
    async fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError>;

    /// Up to `limit` audit entries with a sequence number below `before`
    /// (from the newest when `None`), newest first.
    async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError>;

    /// Appends a run of entries, each as [`Store::audit_append`] would, in
    /// one round trip: for seeding or restoring a log (the application
    /// appends one entry at a time). False from the first entry that does
    /// not follow (it and those after it are not written).
    async fn audit_append_run(
        &self,
        entries: &[crate::domain::audit::Entry],
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
        request: &crate::domain::audit::Entry,
    ) -> Result<bool, StoreError>;
}
