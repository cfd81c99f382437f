//! The contact's data key and what is sealed under it: opening the
//! conversation, committing an empty step.

use super::*;

pub(super) fn outbox_context(contact: &ContactKey) -> Vec<u8> {
    Queue::Outbox(contact.clone()).name().into_bytes()
}

/// `value` as JSON, sealed under `context`.
pub(super) fn seal_json<T: serde::Serialize>(
    sealer: &Sealer,
    value: &T,
    context: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let plain = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sealer
        .seal(&plain, context)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Worker {
    /// The contact's data key, when it has one.
    pub(super) fn keyring_sealer(&self, claim: &Claim) -> Result<Option<Sealer>, StoreError> {
        claim
            .data_key
            .as_ref()
            .map(|wrapped| {
                self.keyring.unwrap(&claim.contact, wrapped).map_err(|e| {
                    // Nothing is acknowledged: the work waits for the key.
                    StoreError::Corrupt(format!(
                        "the contact's data key cannot be unwrapped ({e}); is every master key in force configured?"
                    ))
                })
            })
            .transpose()
    }

    /// The contact's data key, made now if it has none (a timeout firing
    /// after the key expired); the claim then names it, so the commit
    /// checks it is still the contact's.
    pub(super) async fn sealer_for(&self, claim: &mut Claim) -> Result<Sealer, StoreError> {
        if let Some(sealer) = self.keyring_sealer(claim)? {
            return Ok(sealer);
        }
        let (_, wrapped) = self
            .keyring
            .new_data_key(&claim.contact)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let stored = self
            .store
            .create_data_key(
                &claim.contact,
                wrapped,
                crate::crypto::keyring::data_key_ttl_for(self.profile_ttl),
            )
            .await?;
        let sealer = self
            .keyring
            .unwrap(&claim.contact, &stored)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        claim.data_key = Some(stored);
        Ok(sealer)
    }

    pub(super) fn open_state(&self, claim: &Claim, sealer: Option<&Sealer>) -> Conversation {
        claim
            .session
            .as_ref()
            .zip(sealer)
            .and_then(|(sealed, sealer)| sealer.open(sealed, &session_context(&claim.contact)).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .unwrap_or_default()
    }

    pub(super) async fn commit(
        &self,
        claim: &Claim,
        acked: Vec<String>,
        session: Option<Vec<u8>>,
        outbox: Vec<Vec<u8>>,
        wake_at: Option<u64>,
    ) -> Result<Committed, StoreError> {
        self.store
            .commit(
                claim,
                Commit {
                    acked,
                    session,
                    session_ttl: self.session_ttl,
                    outbox,
                    wake_at,
                    window: None,
                    deliveries: Vec::new(),
                    consent: Vec::new(),
                    profile: None,
                    history: Vec::new(),
                    profile_ttl: self.profile_ttl,
                    stats: Vec::new(),
                },
            )
            .await
    }
}
