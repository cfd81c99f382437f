//! The inbox stage: the worker takes one contact at a time from the inbox
//! (any instance may take any contact, never two at once), runs each
//! pending event through the flow engine in the order Meta sent them, and
//! commits the new session, the outbound jobs and the inbox
//! acknowledgement atomically.
//!
//! [`Worker::try_work_next`] does one unit of work and says what happened,
//! so tests can drive it step by step; [`Worker::run`] loops on it. One
//! claim's course, file by file: `seal` (the data key, the sealed
//! conversation), `turn` (the timeout due, then each entry by kind),
//! `message` (a customer's message), `notice` (the first-contact notice
//! and a policy change's), `privacy` (STOP, START, HELP, MY DATA, DELETE
//! MY DATA), `effects` (the flows' effects as jobs), `share`
//! (events for the CRM and helpdesk receivers), `held` (an erasure that
//! waits for the end of a legal hold) and `commit` (consent kept,
//! the step sealed, committed, audited, counted).

mod commit;
mod effects;
mod held;
mod message;
mod notice;
pub mod policy;
mod privacy;
mod seal;
mod share;
mod turn;
pub mod waiting;

use privacy::{ERASE_NO, ERASE_YES};

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::crypto::keyring::Keyring;
use crate::crypto::pseudonym::Pseudonymizer;
use crate::crypto::seal::Sealer;
use crate::domain::ContactKey;
use crate::domain::consent::ConsentChange;
use crate::domain::consent::MARKETING;
use crate::domain::inbound::{
    AgentAction, InboundMessage, InboxEvent, Input, StatusUpdate, input_of,
};
use crate::domain::outbound::{Job, Message as OutMessage, Origin, Outgoing, Recipient};
use crate::domain::payload::StatusKind;
use crate::domain::profile::{Conversation, Profile, profile_context, session_context};
use crate::domain::text::normalize;
use crate::flow::engine::{self, Effect};
use crate::outbox::WINDOW_SECS;
use crate::privacy::keywords::{self, Command};
use crate::store::{
    Claim, Commit, Committed, Delivery, DeliveryState, Lane, Queue, Store, StoreError,
};

/// A worker's lease on a contact: short, and renewed by the process's
/// [`crate::store::lease::Keeper`] while the claim is worked on, so the
/// contacts of a process that died are free again within it.
pub const LEASE: Duration = crate::store::lease::LEASE;
/// Most inbox entries handled in one claim.
pub const BATCH: usize = 50;
/// How often the store is swept for contacts this instance was not handed
/// (queued by another instance, left by a crash, timeouts come due); a
/// sweep that finds nothing doubles the interval, up to [`SWEEP_ANYWAY`].
const SWEEP: Duration = Duration::from_millis(100);
/// Most contacts one sweep hands over.
const SWEEP_LIMIT: usize = 64;
/// However much handed-over work there is, the store is swept at least
/// this often.
const SWEEP_ANYWAY: Duration = Duration::from_secs(1);

/// What one call to [`Worker::try_work_next`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No contact had work.
    Idle,
    /// The contact was held by another worker, or had nothing left.
    Busy(ContactKey),
    /// Handled `events` events of one contact, queued `jobs` messages.
    Worked {
        contact: ContactKey,
        events: usize,
        jobs: usize,
    },
    /// Another worker took over (our lease expired); nothing was written.
    LeaseLost(ContactKey),
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    /// The master keys, to unwrap (or make) the contact's data key.
    pub keyring: Keyring,
    pub pseudonymizer: Pseudonymizer,
    /// Each business's flows, by the number the customer wrote to.
    pub flows: crate::flow::FlowSets,
    pub session_ttl: Duration,
    /// Queue a read receipt for each answered message.
    pub mark_read: bool,
    pub clock: Clock,
    pub wake: crate::shutdown::Wakeups,
    /// Each business's policy version (stamped on the consent it records)
    /// and answers, by number.
    pub policies: policy::Policies,
    /// How long a profile is kept after the contact's last message.
    pub profile_ttl: Duration,
    /// How long the buttons that confirm an erasure are valid.
    pub erase_confirm: Duration,
    /// The audit log's hash chain.
    pub audit: crate::privacy::audit::Chain,
    /// This worker's lease token.
    pub owner: String,
    /// Renews the leases this process holds.
    pub leases: crate::store::lease::Keeper,
    /// Claims a store error kept it from releasing (see
    /// [`crate::store::Stranded`]).
    pub stranded: crate::store::Stranded,
    /// The CRM and helpdesk receivers events are queued for.
    pub hooks: crate::integrations::Hooks,
}

impl Worker {
    /// Works on one contact with pending events, if any: one handed over
    /// by this instance's webhook, or else, when it is this task's turn,
    /// those the sweep of the store finds (queued elsewhere, left by a
    /// crash, or with a timeout due).
    pub async fn try_work_next(&self) -> Result<Outcome, StoreError> {
        self.stranded.release_all(self.store.as_ref()).await?;
        // Busy with handed-over work, the store is still swept now and then
        // (timeouts come due; other instances' work waits).
        let overdue = self.wake.inbox.sweep_overdue(SWEEP_ANYWAY);
        if !overdue && let Some((taken, due)) = self.wake.inbox.pop() {
            let tick = due.then(|| self.clock.now());
            return self.try_contact(taken.contact.clone(), tick).await;
        }
        if overdue || self.wake.inbox.sweep_idle(SWEEP, SWEEP_ANYWAY) {
            let now = self.clock.now();
            let (ready, due) = self.store.sweep(Lane::Inbox, now, SWEEP_LIMIT).await?;
            self.wake.inbox.swept(ready.len() + due.len());
            if ready.len() >= SWEEP_LIMIT || due.len() >= SWEEP_LIMIT {
                // More may be waiting: sweep again once these are done.
                self.wake.inbox.sweep_soon();
            }
            for contact in ready {
                self.wake.inbox.push(contact);
            }
            for contact in due {
                self.wake.inbox.push_due(contact);
            }
            if let Some((taken, due)) = self.wake.inbox.pop() {
                let tick = due.then(|| self.clock.now());
                return self.try_contact(taken.contact.clone(), tick).await;
            }
        }
        Ok(Outcome::Idle)
    }

    /// Works on `contact` unless another worker holds it; with `tick`,
    /// first fires its due timeout. Every line logged meanwhile carries the
    /// pseudonymous contact id (the `conversation` span).
    async fn try_contact(
        &self,
        contact: ContactKey,
        tick: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!("conversation", contact = %contact);
        self.try_contact_in_span(contact, tick)
            .instrument(span)
            .await
    }

    async fn try_contact_in_span(
        &self,
        contact: ContactKey,
        tick: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let taken = std::time::Instant::now();
        let Some(claim) = self
            .store
            .claim(Lane::Inbox, &contact, &self.owner, LEASE, BATCH)
            .await?
        else {
            return Ok(Outcome::Busy(contact));
        };
        // Kept alive until the claim is committed or released.
        let _hold = self.leases.hold(&claim, taken);
        if claim.entries.is_empty() && tick.is_none() {
            // Drained already: commit nothing (keeping the session and its
            // timer), which clears the ready mark.
            let sealer = self.keyring_sealer(&claim)?;
            let wake_at = self
                .open_state(&claim, sealer.as_ref())
                .session
                .and_then(|s| s.deadline);
            let c = self
                .commit(
                    &claim,
                    Vec::new(),
                    claim.session.clone(),
                    Vec::new(),
                    wake_at,
                )
                .await?;
            return Ok(match c {
                Committed::LeaseLost => Outcome::LeaseLost(contact),
                Committed::Done { .. } => Outcome::Busy(contact),
            });
        }
        self.work_or_release(claim, tick).await
    }

    /// As [`Worker::work`]; after a store error, releases the contact
    /// (best effort) instead of leaving it held for a lease time.
    async fn work_or_release(
        &self,
        claim: Claim,
        tick: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let held = claim.clone();
        let result = self.work(claim, tick).await;
        if result.is_err() && self.store.release(&held).await.is_err() {
            // Released once the store answers again.
            self.stranded.keep(held);
        }
        result
    }

    /// Works until `stop` is set; sleeps briefly when idle. The contact
    /// in hand is finished (committed) before it returns.
    pub async fn run(self, stop: crate::shutdown::Shutdown) {
        while !stop.is_stopping() {
            match self.try_work_next().await {
                Ok(Outcome::Idle) => self.wake.inbox.wait(&stop, SWEEP).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "worker: store unavailable; retrying");
                    stop.sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
