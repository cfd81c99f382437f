//! The contacts role: what is kept about one contact, its links, its
//! erasure.

use async_trait::async_trait;

use crate::domain::consent::ConsentChange;
use crate::domain::{BusinessId, ContactKey};
use crate::store::{Delivery, StoreError};

/// What [`Store::resolve_contacts`] knows about a contact key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical contact this key is an alias of.
    pub link: Option<ContactKey>,
    /// The key has a data key of its own (the contact was seen).
    pub known: bool,
}

/// What is kept about one contact (session, profile, history, consent,
/// deliveries, windows), its links to its other ids, and its erasure.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Erases everything kept about a contact: their entries in the
    /// audiences of campaigns not dispatched yet (counted as
    /// `skipped:suppressed`), queued and pending entries,
    /// session, profile, history, consent ledger, delivery records, windows,
    /// dead letters, retry state, leases, its data key and its places in
    /// the shard's
    /// sets; and puts the contact's pseudonymous key on the suppression
    /// list with the time (Unix s). (Redis de-duplication marks, which hold
    /// no personal data, expire on their own within 8 days.) Counted in
    /// the erasures of `business`, whose contact it is.
    async fn erase(
        &self,
        contact: &ContactKey,
        business: &BusinessId,
        at: u64,
    ) -> Result<(), StoreError>;

    /// When the contact was erased (their key is on the suppression list).
    async fn suppressed(&self, contact: &ContactKey) -> Result<Option<u64>, StoreError>;

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
        business: &BusinessId,
        at: u64,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let aliases = self.aliases(contact).await?;
        for alias in &aliases {
            self.erase(alias, business, at).await?;
        }
        self.erase(contact, business, at).await?;
        self.unlink(contact).await?;
        Ok(aliases)
    }
}
