//! The sender: takes one contact's outbox at a time (any instance, never
//! two at once) and sends its jobs in order, each only after the previous
//! one was accepted (or given up).
//!
//! For each job, in this order:
//! 1. the head's retry state: a job in backoff waits (the contact is
//!    deferred; its later jobs wait behind it, which keeps the order);
//! 2. `outbox.max_age`, then the 24-hour window for free-form messages:
//!    too late is recorded (`expired`, `outside_window`), never sent;
//! 3. the number's breaker: while open, nothing is sent for that number
//!    except one probe every `outbox.probe_interval` (shared by all
//!    instances); nothing is dropped;
//! 4. rate limits shared by every instance: the number's
//!    `outbox.messages_per_second`, and for business-initiated messages
//!    the recipient's pair limit;
//! 5. the request, and what Meta answered: accepted; transient (retry
//!    with full-jitter backoff, `outbox.max_attempts` in all, then a dead
//!    letter); throttled (the whole number slows down too); pair limit
//!    (4^n seconds); credentials (open the breaker); permanent (recorded
//!    against the message, not retried).
//!
//! Duplicates: the job's removal and its `accepted` record are one atomic
//! write ([`Store::finish`]), so a job still queued was never recorded as
//! sent. A message goes out twice only when the process dies (or loses
//! the store) between Meta's answer and that write. Read receipts are
//! removed with the next job of the claim instead (marking a message read
//! twice changes nothing), which saves a write per answered message.

pub mod breakers;
mod export;
mod failure;
mod hook;
mod one;
mod pace;

use breakers::Breakers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use super::WINDOW_SECS;
use super::graph::{Answer, Class, Failure, Graph, MARKETING_STOPPED_CODE};
use crate::clock::Clock;
use crate::config::OutboxSettings;
use crate::crypto::pseudonym::Pseudonymizer;
use crate::crypto::seal::Sealer;
use crate::domain::outbound::{Job, MediaRef, Message, Origin, Recipient};
use crate::domain::{BusinessId, ContactKey};
use crate::store::stats;
use crate::store::{
    Breaker, Claim, Delivery, DeliveryState, Finish, Lane, Queue, Store, StoreError,
};

/// A sender's lease on a contact's outbox: short, and renewed by the
/// process's [`crate::store::lease::Keeper`] while the sender works (a
/// request may take up to `outbox.request_timeout`), so the contacts of a
/// process that died are free again within it.
pub const LEASE: Duration = crate::store::lease::LEASE;
/// The name of the file an export is sent as.
const EXPORT_FILE: &str = "my-data.json";
/// Most jobs taken in one claim.
pub const BATCH: usize = 20;
/// How often the store is swept for outboxes this instance was not handed
/// (queued by another instance, left by a crash, deferred and now due);
/// a sweep that finds nothing doubles the interval, up to
/// [`SWEEP_ANYWAY`].
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Most contacts one sweep hands over.
const SWEEP_LIMIT: usize = 64;
/// However much handed-over work there is, the store is swept at least
/// this often.
const SWEEP_ANYWAY: Duration = Duration::from_secs(1);
/// Rate-limit slots taken ahead for a claim's later jobs are used only
/// this soon after they were taken: a slot used late would add to the
/// slots other senders take meanwhile and overshoot the number's rate.
const SLOT_LIFE: Duration = Duration::from_millis(250);
/// A rate-limit wait up to this is slept through holding the contact;
/// longer ones defer it.
const SHORT_WAIT_MS: u64 = 250;
/// A sender starts another request of the same claim only while its lease
/// is confirmed for at least this long: renewals failing (the store
/// unreachable) stop it before another sender could take the contact and
/// send the same job while a request is still in flight.
const LEASE_MARGIN: Duration = crate::store::lease::START_MARGIN;

/// What one call to [`Sender::try_send_next`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Idle,
    /// The contact was held by another sender.
    Busy(ContactKey),
    /// Finished this many jobs of one contact (sent or given up).
    Worked {
        contact: ContactKey,
        finished: usize,
    },
    /// The contact's first job must wait (backoff, rate, paused number).
    Deferred {
        contact: ContactKey,
        finished: usize,
    },
}

/// The retry state of an outbox's first job (stored as the claim's head).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadState {
    /// The outbox entry it belongs to.
    pub entry: String,
    pub attempts: u32,
    /// Not before this time (Unix ms).
    pub next_at_ms: u64,
    #[serde(default)]
    pub last_code: Option<i64>,
    #[serde(default)]
    pub last_error: String,
    #[serde(default)]
    pub pair_hits: u32,
    /// A business-initiated message's request went out at this time (Unix
    /// ms) and its answer is not known (the process died, or no answer
    /// came): before sending it again, wait up to
    /// `outbox.unconfirmed_wait` for a status webhook that says Meta has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_at: Option<u64>,
    /// When a sender first found the request's answer unknown (Unix ms):
    /// the wait for a status is counted from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_since: Option<u64>,
}

/// A dead letter: the job and why it was given up (sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Letter {
    pub job: Option<Job>,
    pub attempts: u32,
    pub code: Option<i64>,
    pub reason: String,
    pub at: u64,
}

/// The context dead letters are sealed under.
pub fn dead_context(contact: &ContactKey) -> Vec<u8> {
    format!("dead:{contact}").into_bytes()
}

pub struct Sender {
    pub store: Arc<dyn Store>,
    /// The master keys, to unwrap the contact's data key.
    pub keyring: crate::crypto::keyring::Keyring,
    pub pseudonymizer: Pseudonymizer,
    pub graph: Graph,
    /// `outbox.*` in force (SIGHUP reloads them).
    pub settings: crate::config::Live<OutboxSettings>,
    pub breakers: Breakers,
    pub clock: Clock,
    /// Set on SIGTERM: the request in flight finishes, the rest stays
    /// queued.
    pub stop: crate::shutdown::Shutdown,
    pub wake: crate::shutdown::Wakeups,
    /// `privacy.policy_version`, stamped on consent it records.
    pub policy_version: String,
    /// The businesses served: whose each number is (their statistics,
    /// metrics, audit entries and policy versions).
    pub businesses: Arc<crate::config::businesses::Directory>,
    /// The audit log's hash chain.
    pub audit: crate::privacy::audit::Chain,
    /// `privacy.retention_days`, stated in exports.
    pub retention_days: u32,
    /// This sender's lease token.
    pub owner: String,
    /// Renews the leases this process holds.
    pub leases: crate::store::lease::Keeper,
    /// Claims a store error kept it from releasing: released as soon as
    /// the store answers again, so the contacts are not held for a whole
    /// lease time after a Redis restart.
    pub stranded: crate::store::Stranded,
    /// The CRM and helpdesk receivers integration events go to.
    pub hooks: crate::integrations::Hooks,
}

fn outbox_context(contact: &ContactKey) -> Vec<u8> {
    Queue::Outbox(contact.clone()).name().into_bytes()
}

/// Full-jitter exponential backoff: a random delay up to
/// `min(cap, base * 2^(attempt-1))`.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(cap);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// What the store keeps about a job: its state, never its content.
fn record_of(
    job: &Job,
    state: DeliveryState,
    at: u64,
    code: Option<i64>,
    reason: &str,
    attempts: u32,
) -> Delivery {
    Delivery {
        job: job.id.clone(),
        state,
        at,
        wamid: None,
        kind: Some(job.message.kind().to_owned()),
        code,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        attempts: (attempts > 0).then_some(attempts),
    }
}

/// For a finish that only removes sent read receipts: no job id and no
/// wamid, so nothing is recorded.
fn no_record() -> Delivery {
    Delivery {
        job: String::new(),
        state: DeliveryState::Accepted,
        at: 0,
        wamid: None,
        kind: None,
        code: None,
        reason: None,
        attempts: None,
    }
}

/// A job given up: its record, its dead letter, and consent it withdrew.
type GiveUp = (
    Delivery,
    Option<Letter>,
    Option<crate::domain::consent::ConsentChange>,
);

enum Next {
    /// The job is done with (sent or given up): go on to the next one.
    Finished,
    /// Stop here and release: the lease was lost.
    Stop,
    /// The contact was deferred (released by the store).
    Deferred,
}

/// What a sender carries through one claim.
#[derive(Default)]
struct Run {
    /// Read receipts sent whose removal rides on the next write of the
    /// claim (sending one twice after a crash changes nothing).
    sent: Vec<String>,
    /// Rate-limit slots taken ahead for the claim's later jobs, per number,
    /// and when: a slot is used only while fresh (see [`SLOT_LIFE`]).
    slots: HashMap<String, (u32, Instant)>,
    /// Jobs of the claim from the current one on.
    left: u32,
    /// The current job is the claim's last: its finish releases the claim.
    last: bool,
    /// A finish released the claim.
    released: bool,
    /// The contact's data key (its queued jobs are sealed under it).
    sealer: Option<Sealer>,
    /// The business of the contact (of the number its jobs go out from;
    /// `None`: `default`), whose statistics and metrics count the jobs.
    business: Option<BusinessId>,
}

impl Sender {
    /// The business whose number `phone_number_id` is (`None`: `default`).
    fn business_of(&self, phone_number_id: &str) -> Option<BusinessId> {
        self.businesses
            .of_number(phone_number_id)
            .and_then(|b| b.id.tag())
    }

    /// Sends the pending jobs of one contact, if any: one handed over by
    /// this instance's workers, or else, when it is this task's turn, those
    /// the sweep of the store finds (queued elsewhere, left by a crash, or
    /// deferred and now due).
    pub async fn try_send_next(&self) -> Result<SendOutcome, StoreError> {
        self.stranded.release_all(self.store.as_ref()).await?;
        // Busy with handed-over work, the store is still swept now and then
        // (deferred outboxes come due; other instances' work waits).
        let overdue = self.wake.outbox.sweep_overdue(SWEEP_ANYWAY);
        if !overdue && let Some((taken, _)) = self.wake.outbox.pop() {
            return self.try_contact(taken.contact.clone()).await;
        }
        if overdue || self.wake.outbox.sweep_idle(IDLE_POLL, SWEEP_ANYWAY) {
            let now_ms = self.clock.now() * 1000;
            let (ready, due) = self.store.sweep(Lane::Outbox, now_ms, SWEEP_LIMIT).await?;
            self.wake.outbox.swept(ready.len() + due.len());
            if ready.len() >= SWEEP_LIMIT || due.len() >= SWEEP_LIMIT {
                // More may be waiting: sweep again once these are done.
                self.wake.outbox.sweep_soon();
            }
            for contact in ready.into_iter().chain(due) {
                self.wake.outbox.push(contact);
            }
            if let Some((taken, _)) = self.wake.outbox.pop() {
                return self.try_contact(taken.contact.clone()).await;
            }
        }
        Ok(SendOutcome::Idle)
    }

    /// Sends `contact`'s pending jobs unless another sender holds them.
    /// Every line logged meanwhile carries the pseudonymous contact id (the
    /// `send` span).
    async fn try_contact(&self, contact: ContactKey) -> Result<SendOutcome, StoreError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!("send", contact = %contact);
        self.try_contact_in_span(contact).instrument(span).await
    }

    async fn try_contact_in_span(&self, contact: ContactKey) -> Result<SendOutcome, StoreError> {
        let taken = Instant::now();
        let Some(claim) = self
            .store
            .claim(Lane::Outbox, &contact, &self.owner, LEASE, BATCH)
            .await?
        else {
            return Ok(SendOutcome::Busy(contact));
        };
        // Kept alive until the claim is finished, deferred or released.
        let hold = self.leases.hold(&claim, taken);
        let result = self.work(&claim, &hold).await;
        if result.is_err() {
            // Do not leave the contact held for a lease time after a
            // store error: released now, or once the store is back.
            if self.store.release(&claim).await.is_err() {
                self.stranded.keep(claim);
            }
        }
        result
    }

    async fn work(
        &self,
        claim: &Claim,
        hold: &crate::store::lease::Hold,
    ) -> Result<SendOutcome, StoreError> {
        let contact = claim.contact.clone();
        let head: Option<HeadState> = claim
            .head
            .as_deref()
            .and_then(|h| serde_json::from_slice(h).ok());
        let mut finished = 0;
        let mut run = Run::default();
        if let Some(wrapped) = &claim.data_key {
            // A key that cannot be unwrapped (its master key is not
            // configured) leaves the jobs queued, untouched.
            let sealer = self.keyring.unwrap(&contact, wrapped).map_err(|e| {
                StoreError::Corrupt(format!(
                    "the contact's data key cannot be unwrapped ({e}); is every master key in force configured?"
                ))
            })?;
            run.sealer = Some(sealer);
        }
        let n = claim.entries.len();
        for (i, entry) in claim.entries.iter().enumerate() {
            if i > 0 && (self.stop.is_stopping() || !hold.good_for(LEASE_MARGIN)) {
                // The rest stays queued (and ready) for the next claim.
                break;
            }
            run.left = (n - i) as u32;
            run.last = i + 1 == n;
            let state = head
                .clone()
                .filter(|h| h.entry == entry.id)
                .unwrap_or_else(|| HeadState {
                    entry: entry.id.clone(),
                    ..HeadState::default()
                });
            match self
                .one(claim, &entry.id, &entry.sealed, state, &mut run)
                .await?
            {
                Next::Finished => finished += 1,
                Next::Stop => break,
                Next::Deferred => {
                    return Ok(SendOutcome::Deferred { contact, finished });
                }
            }
        }
        if !run.released {
            match run.sent.split_first() {
                Some((first, rest)) => {
                    let mut done = Finish::record(no_record());
                    done.also = rest.to_vec();
                    done.release = true;
                    self.store.finish(claim, first, done).await?;
                }
                None => self.store.release(claim).await?,
            }
        }
        if finished < n || n == BATCH {
            // Jobs may be left: this instance goes on with them.
            self.wake.outbox.push(contact.clone());
        }
        Ok(SendOutcome::Worked { contact, finished })
    }

    /// Finishes a job: with the read receipts sent before it, and with the
    /// claim's release when it is the last.
    async fn finish(
        &self,
        claim: &Claim,
        id: &str,
        mut finish: Finish,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        finish.also = std::mem::take(&mut run.sent);
        finish.release = run.last;
        let m = crate::metrics::global();
        let business = BusinessId::of_tag(run.business.as_ref());
        let (stats, consent, record) = (
            finish.stats.clone(),
            finish.consent.clone(),
            finish.record.clone(),
        );
        let held = self.store.finish(claim, id, finish).await?;
        m.counted(&stats, consent.iter());
        if !record.job.is_empty() && record.kind.as_deref() != Some("hook") {
            // A message's outcome (read receipts have no record; an
            // integration event is not a message).
            let code = record.code.map(|c| c.to_string()).unwrap_or_default();
            m.sends
                .with_label_values(&[business.as_str(), record.state.name(), code.as_str()])
                .inc();
            if record.state == DeliveryState::Dead {
                m.dead_letters.with_label_values(&[business.as_str()]).inc();
            }
            // The contact is the `send` span's.
            tracing::debug!(
                state = record.state.name(),
                code = record.code,
                "send finished"
            );
        }
        run.released = run.last;
        Ok(if held { Next::Finished } else { Next::Stop })
    }

    /// The head job must wait: removes the read receipts already sent,
    /// then defers the contact until `until` (Unix ms).
    async fn defer(
        &self,
        claim: &Claim,
        run: &mut Run,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<Next, StoreError> {
        if let Some((first, rest)) = run.sent.split_first() {
            let mut done = Finish::record(no_record());
            done.also = rest.to_vec();
            self.store.finish(claim, first, done).await?;
            run.sent.clear();
        }
        self.store.defer(claim, head, until).await?;
        Ok(Next::Deferred)
    }

    async fn give_up(
        &self,
        claim: &Claim,
        id: &str,
        (record, letter, consent): GiveUp,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let dead_letter = match letter {
            Some(l) => {
                let plain =
                    serde_json::to_vec(&l).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                // Without a data key the letter is recorded without its
                // (unreadable) message.
                match &run.sealer {
                    Some(sealer) => Some(
                        sealer
                            .seal(&plain, &dead_context(&claim.contact))
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    ),
                    None => None,
                }
            }
            None => None,
        };
        tracing::warn!(
            contact = %claim.contact,
            job = %record.job,
            state = ?record.state,
            code = ?record.code,
            reason = record.reason.as_deref().unwrap_or(""),
            "outbound message not sent"
        );
        let audited = consent
            .as_ref()
            .map(|c| crate::privacy::audit::of_consent(claim.contact.as_str(), c));
        let mut finish = Finish::record(record);
        finish.dead_letter = dead_letter;
        finish.consent = consent;
        let next = self.finish(claim, id, finish, run).await?;
        if let Some(event) = audited {
            crate::privacy::audit::note(self.store.as_ref(), &self.audit, event).await;
        }
        Ok(next)
    }

    /// Defers the head job until `at_ms` (Unix ms), keeping its retry
    /// state for the next attempt.
    async fn retry_at(
        &self,
        claim: &Claim,
        run: &mut Run,
        state: &mut HeadState,
        at_ms: u64,
    ) -> Result<Next, StoreError> {
        state.next_at_ms = at_ms;
        let head = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.defer(claim, run, Some(head), at_ms).await
    }

    /// Sends until `stop` is set; sleeps briefly when idle. A send in
    /// flight is finished before it returns.
    pub async fn run(self, stop: crate::shutdown::Shutdown) {
        while !stop.is_stopping() {
            match self.try_send_next().await {
                Ok(SendOutcome::Idle) => self.wake.outbox.wait(&stop, IDLE_POLL).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sender: store unavailable; retrying");
                    stop.sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(900);
        for attempt in 1..=12 {
            let ceiling = Duration::from_secs(1u64 << (attempt - 1).min(20)).min(cap);
            for _ in 0..50 {
                assert!(backoff(base, cap, attempt) <= ceiling);
            }
        }
        // Jitter: not always the same value.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| backoff(base, cap, 10)).collect();
        assert!(draws.len() > 10);
    }
}
