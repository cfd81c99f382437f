//! The inbox role: appending events and committing what a worker did.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::consent::ConsentChange;

use crate::domain::ContactKey;
use crate::store::{Claim, Counts, Delivery, StoreError};

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
    /// One contact's outbound jobs, in sending order.
    Outbox(ContactKey),
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
            Queue::Outbox(k) => format!("o:{k}"),
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
    /// Consent the event gives or withdraws (STOP, START, WhatsApp's
    /// marketing Stop/Resume): appended to the contact's ledger in the same
    /// atomic write as the entry, and only if the entry is new, so it is on
    /// record before the webhook is acknowledged.
    /// Recorded only when it changes the contact's state for its purpose
    /// (see [`crate::domain::consent::changes`]).
    pub consent: Option<ConsentChange>,
    /// For an entry whose `consent` is a grant: the event sealed as it
    /// reads when the grant is refused (beyond
    /// [`crate::domain::consent::GRANTS_PER_DAY`]), stored instead of
    /// `sealed` then, so that the worker answers what was decided.
    pub refused: Option<Vec<u8>>,
    /// The contact's wrapped data key the entry is sealed under (contact
    /// queues only; see [`crate::privacy::keys`]).
    pub key: Option<EntryKey>,
}

/// The data key an inbox entry was sealed under.
#[derive(Debug, Clone)]
pub struct EntryKey {
    /// As stored (wrapped under a master key).
    pub wrapped: Vec<u8>,
    /// A key just made: stored when the contact has none. Otherwise it must
    /// be the one stored.
    pub fresh: bool,
    /// How long the key is kept after the contact's last message.
    pub ttl: Duration,
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
    /// Stored, but the consent it carried changes nothing (the contact's
    /// latest entry for that purpose already says the same: a second
    /// STOP), so none was recorded, counted or attributed.
    NewSameConsent,
    /// Stored (as [`InboxEntry::refused`]), but the grant it carried is
    /// beyond [`crate::domain::consent::GRANTS_PER_DAY`], so none was
    /// recorded, counted or attributed.
    NewGrantRefused,
    Duplicate,
    /// Not stored: the contact's data key is not the one the entry was
    /// sealed under (it was erased, or made elsewhere). Seal it again under
    /// the stored key ([`Store::data_key`]) or a fresh one, and retry.
    KeyMismatch,
}

impl Appended {
    /// The entry was stored (whether or not its consent was recorded).
    pub fn is_new(self) -> bool {
        matches!(
            self,
            Appended::New | Appended::NewSameConsent | Appended::NewGrantRefused
        )
    }
}

/// What a worker writes once it has handled some of a claim's entries.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The handled inbox entries (their ids).
    pub acked: Vec<String>,
    /// The new sealed session; `None` deletes it.
    pub session: Option<Vec<u8>>,
    pub session_ttl: Duration,
    /// Sealed outbound jobs, appended in order to the contact's outbox.
    pub outbox: Vec<Vec<u8>>,
    /// When the session's next timeout is due (Unix seconds); `None`
    /// cancels the contact's timer.
    pub wake_at: Option<u64>,
    /// The customer wrote to this business number at this time (Unix s):
    /// opens or extends the 24-hour customer service window.
    pub window: Option<(String, u64)>,
    /// Delivery updates from status webhooks, merged monotonically.
    pub deliveries: Vec<Delivery>,
    /// Consent given or withdrawn, appended to the contact's ledger.
    pub consent: Vec<ConsentChange>,
    /// The contact's new sealed profile; `None` leaves it as it is.
    pub profile: Option<Vec<u8>>,
    /// Sealed message history entries (what the customer sent, what we
    /// queued for them), appended to the contact's history.
    pub history: Vec<Vec<u8>>,
    /// How long a profile (and the history, after its last entry) is kept
    /// after its last write (`privacy.retention_days`).
    pub profile_ttl: Duration,
    /// Anonymous counters to add to today's statistics (see [`stats`]);
    /// opt-ins and opt-outs are counted from `consent` by the store.
    pub stats: Counts,
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Written; this many inbox entries remain for the contact.
    Done { inbox_left: u64 },
    /// The lease expired and someone else may hold the contact: nothing
    /// was written (the entries will be handled again).
    LeaseLost,
}

/// The durable inbox: appending events (idempotently) and committing what a
/// worker did with them.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Appends each entry unless its de-duplication key was seen; returns,
    /// in order, whether each one was new. An entry is durable when this
    /// returns `Ok`. Each entry is atomic (seen-mark and append together);
    /// on `Err` some entries may be stored, and retrying is safe.
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError>;

    /// Up to `limit` entries of a queue, oldest first.
    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError>;

    /// Inbox lane. Atomically, if the claim still holds its lease: removes
    /// the acked entries, writes (or deletes) the session, appends the
    /// outbox jobs (and marks the contact ready for sending), sets or
    /// cancels the session's timer, drops the contact from the ready set
    /// when its inbox is empty, and releases the lease.
    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError>;

    /// Appends like [`Store::append`] and records `links` like
    /// [`Store::link_contacts`] (without answering which link holds: the
    /// first one does), in one round trip where the backend can.
    async fn append_linked(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError>;
}
