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
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::keyring::Keyring;
use crate::store::StoreError;

/// Seals `value` (as JSON) under the master keys as the record `id` of
/// `kind` (`kind:id` is the context, so a record moved to another id or
/// kind does not open).
pub fn seal_record(
    keyring: &Keyring,
    (kind, id): (&str, &str),
    value: &impl Serialize,
) -> Result<Vec<u8>, StoreError> {
    let plain = serde_json::to_vec(value).map_err(|e| unreadable(kind, e))?;
    keyring
        .seal_system(&plain, format!("{kind}:{id}").as_bytes())
        .map_err(|e| unreadable(kind, e))
}

/// Opens the record `id` of `kind` sealed by [`seal_record`]. One that
/// does not open (a master key no longer configured) or parse is an error.
pub fn open_record<T: DeserializeOwned>(
    keyring: &Keyring,
    (kind, id): (&str, &str),
    sealed: &[u8],
) -> Result<T, StoreError> {
    let plain = keyring
        .open_system(sealed, format!("{kind}:{id}").as_bytes())
        .map_err(|e| unreadable(kind, e))?;
    serde_json::from_slice(&plain).map_err(|e| unreadable(kind, e))
}

fn unreadable(kind: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a {kind} record: {e}"))
}

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
