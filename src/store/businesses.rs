//! The businesses role: which business each contact belongs to, and the
//! record of a business being taken off the system.
//!
//! A contact key is a keyed hash of the business and the customer, so
//! nothing in it says whose contact it is. The owner index says so: it is
//! written when a business first meets a contact (its first message, the
//! first campaign message, a consent an operator records) and read to
//! walk one business's contacts: its counts, its audiences, its removal.
//! It holds pseudonymous keys and business ids only.

use async_trait::async_trait;

use crate::domain::{BusinessId, ContactKey};
use crate::store::StoreError;

/// The pin that says every contact stored before the owner index existed
/// was given to the `default` business (see [`BusinessStore::adopt`]).
pub const ADOPTED_PIN: &str = "owners_adopted";

/// How long a contact's owner outlives its data before a pass of
/// [`BusinessStore::prune_owners`] forgets it (Unix s).
pub const PRUNE_GRACE: u64 = 3600;

/// How long the note that a contact had no data is kept (Redis).
pub const STALE_TTL: u64 = 3 * 86_400;

/// Which business each contact belongs to, and businesses' removals.
#[async_trait]
pub trait BusinessStore: Send + Sync {
    /// Records that the contacts belong to `business`, unless a business
    /// is recorded for them already (a contact never changes hands).
    async fn enlist(
        &self,
        business: &BusinessId,
        contacts: &[ContactKey],
    ) -> Result<(), StoreError>;

    /// The business recorded for the contact, if any.
    async fn owner(&self, contact: &ContactKey) -> Result<Option<String>, StoreError>;

    /// A page of `business`'s contacts from `cursor` (`None`: the start);
    /// answers them and the cursor of the next page (`None`: done). A page
    /// may be empty while more follow.
    async fn members(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Option<String>), StoreError>;

    /// How many contacts each business has on record (erased ones whose
    /// suppression is kept count until their business is removed).
    async fn member_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Forgets that a contact was ever here: its owner record and its
    /// place on the suppression list (its data is erased first, with
    /// [`crate::store::ContactStore::erase_contact`]). Only for a contact
    /// whose business is removed: anyone else's erasure keeps them
    /// suppressed.
    async fn forget(&self, contact: &ContactKey) -> Result<(), StoreError>;

    /// Gives every contact that has a data key or is suppressed and has no
    /// owner to `business` (the `default` business, whose contacts earlier
    /// releases stored): a page at a time from `cursor`; answers how many
    /// it gave and the next cursor (`None`: done).
    async fn adopt(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError>;

    /// Forgets the owner of each contact, from `cursor` on, that has had
    /// neither a data key nor a place on the suppression list (its data
    /// expired under the retention rules) since a pass at least
    /// [`PRUNE_GRACE`] before `now` (Unix s): the first pass that finds it
    /// so only notes when. (A contact is enlisted just before its first
    /// data key is stored: a pass in between must not forget it.) A page at
    /// a time; answers how many it forgot and the next cursor (`None`:
    /// done).
    async fn prune_owners(
        &self,
        cursor: Option<String>,
        limit: usize,
        now: u64,
    ) -> Result<(u64, Option<String>), StoreError>;

    /// Whether [`BusinessStore::adopt`] went through the store once
    /// (the pin [`ADOPTED_PIN`] is set; [`crate::store::KeyStore::pin`]
    /// sets it).
    async fn adopted(&self) -> Result<bool, StoreError>;

    /// The removal record of a business (JSON), if it is being or was
    /// removed.
    async fn removal(&self, business: &BusinessId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a business's removal record (JSON), replacing the last one.
    async fn put_removal(&self, business: &BusinessId, record: &[u8]) -> Result<(), StoreError>;

    /// Every removal record, by business id.
    async fn removals(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Deletes a campaign whole: its definition, audience, counters,
    /// lease and rate (its contacts' marks go with the contacts).
    async fn drop_campaign(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes the de-duplication marks of `business`'s contacts (no
    /// personal data, but named after the contact): a page at a time from
    /// `cursor`; answers how many it deleted and the next cursor (`None`:
    /// done). Run before the contacts are forgotten: it reads their owner.
    async fn drop_marks(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError>;

    /// Deletes what is kept about a removed business apart from its
    /// contacts and its removal record: its contact count and its numbers'
    /// send rates.
    async fn drop_business(
        &self,
        business: &BusinessId,
        numbers: &[String],
    ) -> Result<(), StoreError>;
}
