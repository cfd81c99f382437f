//! The records role: small records kept by kind and id, shared by every
//! instance (operators, their API tokens and enrolments, the privacy
//! desk's requests, legal holds, disclosures, the agents' inbox). A
//! record is opaque bytes to the store: callers seal what is personal
//! (`Keyring::seal_system`, with `kind:id` as the context).
//!
//! A kind holds few records (hundreds, not millions): it is read whole.
//! On Redis a kind is one hash, `P{meta}:doc:<kind>`, in one slot; a
//! mark of [`DocStore::use_once`] is `P{meta}:once:<kind>:<id>`, a key
//! with its own expiry. On the embedded store they are the tables `docs`
//! and `once`.

use async_trait::async_trait;

use crate::store::StoreError;

/// Small records by kind and id.
#[async_trait]
pub trait DocStore: Send + Sync {
    /// Keeps `record` as `id` of `kind`, replacing what was there.
    async fn put_doc(&self, kind: &str, id: &str, record: Vec<u8>) -> Result<(), StoreError>;

    /// The record `id` of `kind`.
    async fn doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every record of `kind`: (id, record), by id.
    async fn docs(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Replaces record `id` of `kind` with `record` only if it is still
    /// `expected` (`None`: only if there is none), atomically; answers
    /// whether it did. Two instances racing for the same change: one wins.
    async fn swap_doc(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&[u8]>,
        record: Vec<u8>,
    ) -> Result<bool, StoreError>;

    /// Removes record `id` of `kind`; answers whether there was one.
    async fn drop_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;

    /// Removes every record of `kind`.
    async fn drop_docs(&self, kind: &str) -> Result<(), StoreError>;

    /// Marks `id` of `kind` used until `until` (Unix s): true the first
    /// time, false while the mark lasts (a one-time code, a link).
    async fn use_once(&self, kind: &str, id: &str, until: u64) -> Result<bool, StoreError>;
}
