//! The outbox role: delivery records, finishing and deferring jobs, dead
//! letters.

use async_trait::async_trait;

use crate::domain::consent::ConsentChange;

use crate::domain::ContactKey;
use crate::store::{Claim, Counts, StoreError, StoredEntry};

/// Where an outbound message stands. The order of the variants is the
/// order of progress: an update never moves a message back, and the final
/// states never change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Meta accepted the request (the synchronous answer).
    Accepted,
    Sent,
    Delivered,
    Read,
    /// A voice message was played.
    Played,
    /// Meta reported a failure (a status webhook or a permanent error).
    Failed,
    /// Not sent: the 24-hour window had closed.
    OutsideWindow,
    /// Not sent: it waited longer than its useful life.
    Expired,
    /// Not sent: every attempt failed; moved to the dead letters.
    Dead,
    /// Not sent: the consent it needs (marketing) was not given, or was
    /// withdrawn before it could go.
    NoConsent,
    /// Not sent: its campaign was cancelled first.
    Cancelled,
}

impl DeliveryState {
    /// Every state, in the order of progress.
    pub const ALL: [DeliveryState; 11] = [
        DeliveryState::Accepted,
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Read,
        DeliveryState::Played,
        DeliveryState::Failed,
        DeliveryState::OutsideWindow,
        DeliveryState::Expired,
        DeliveryState::Dead,
        DeliveryState::NoConsent,
        DeliveryState::Cancelled,
    ];

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        self >= DeliveryState::Failed
    }

    /// The state as serialized (`no_consent`, …).
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
            DeliveryState::Played => "played",
            DeliveryState::Failed => "failed",
            DeliveryState::OutsideWindow => "outside_window",
            DeliveryState::Expired => "expired",
            DeliveryState::Dead => "dead",
            DeliveryState::NoConsent => "no_consent",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// The rank used to merge updates: higher wins; final states win over
    /// everything and are never replaced.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryState::Accepted => 1,
            DeliveryState::Sent => 2,
            DeliveryState::Delivered => 3,
            DeliveryState::Read => 4,
            DeliveryState::Played => 5,
            _ => 10,
        }
    }
}

/// What the store keeps about one outbound message: its state, never its
/// content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// Our job id (sent as `biz_opaque_callback_data`); empty when a
    /// status update names only the wamid.
    pub job: String,
    pub state: DeliveryState,
    /// When the state was reached (Unix seconds).
    pub at: u64,
    /// A keyed hash of Meta's message id (wamids encode phone numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    /// The message kind (`text`, `template`, …), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Meta's error code, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Why, in words that hold no personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made (for dead letters and failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Delivery {
    /// Merges `update` into `self` (the stored record): the state moves
    /// only forward and a final state is kept; fields the update lacks
    /// are kept. Returns whether anything changed.
    pub fn merge(&mut self, update: &Delivery) -> bool {
        if self.state.is_final() || update.state.rank() <= self.state.rank() {
            return false;
        }
        self.state = update.state;
        self.at = update.at;
        if update.wamid.is_some() {
            self.wamid.clone_from(&update.wamid);
        }
        if update.kind.is_some() {
            self.kind.clone_from(&update.kind);
        }
        if update.code.is_some() {
            self.code = update.code;
        }
        if update.reason.is_some() {
            self.reason.clone_from(&update.reason);
        }
        if update.attempts.is_some() {
            self.attempts = update.attempts;
        }
        true
    }
}

/// How a sender is done with an outbox job.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The job's record (accepted, failed, outside_window, expired, dead).
    pub record: Delivery,
    /// For a dead letter: the sealed job and its last error, kept for an
    /// operator.
    pub dead_letter: Option<Vec<u8>>,
    /// Consent Meta's answer tells us was withdrawn (131050).
    pub consent: Option<ConsentChange>,
    /// Earlier jobs of the same claim that were sent but are removed only
    /// now: read receipts, whose repetition after a crash is harmless
    /// (marking a message read twice changes nothing), so their removal
    /// rides on the next write instead of costing one of its own.
    pub also: Vec<String>,
    /// This is the claim's last job: release the claim in the same write
    /// (as [`Store::release`] does), if the lease is still held.
    pub release: bool,
    /// Anonymous counters to add to today's statistics (an opt-out in
    /// `consent` is counted by the store).
    pub stats: Counts,
}

impl Finish {
    /// A plain finish: the record, nothing else.
    pub fn record(record: Delivery) -> Finish {
        Finish {
            record,
            dead_letter: None,
            consent: None,
            also: Vec::new(),
            release: false,
            stats: Vec::new(),
        }
    }
}

/// A dead letter as listed for an operator.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub contact: ContactKey,
    pub entry: StoredEntry,
}

/// A claimed outbox: finishing, deferring and retrying its jobs, and the
/// dead letters.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Outbox lane: atomically removes one job (and `also`), clears the
    /// head's retry state, writes the job's delivery record (merged), for
    /// a dead letter keeps it in the dead letters, and with `release`
    /// releases the claim. This happens even when the
    /// lease was lost (the job *was* sent, or given up: sending it again
    /// would be wrong); the answer says whether the lease is still held.
    /// Because the removal and the record are one write, a job still in
    /// the outbox was never recorded as sent: that is the sent-marker.
    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError>;

    /// Outbox lane: the head job must wait. Writes its retry state (when
    /// given), wakes the contact's outbox at `until` (Unix seconds) and
    /// releases the claim. Nothing is written if the lease was lost.
    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError>;

    /// Outbox lane: writes the head job's retry state while the claim still
    /// holds its lease (nothing else changes); answers whether it did.
    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError>;

    /// Makes every deferred outbox due now (a paused number resumed).
    async fn wake_deferred(&self) -> Result<(), StoreError>;

    /// Up to `limit` dead letters, oldest contacts first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;
}
