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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use super::graph::{Answer, Class, Failure, Graph, MARKETING_STOPPED_CODE};
use super::{Job, Origin, WINDOW_SECS};
use crate::clock::Clock;
use crate::config::OutboxSettings;
use crate::domain::ContactKey;
use crate::domain::audit::{Actor, Event};
use crate::privacy::crypto::Sealer;
use crate::privacy::pseudonym::Pseudonymizer;
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
/// (queued by another instance, left by a crash, deferred and now due).
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

/// Open breakers, as this instance knows them: updated at once by this
/// instance's senders and re-read from the store every second (for the
/// other instances').
#[derive(Clone, Default)]
pub struct Breakers {
    inner: Arc<Mutex<KnownBreakers>>,
}

/// When the store was last read, and the open breakers by number.
type KnownBreakers = (Option<Instant>, HashMap<String, Breaker>);

impl Breakers {
    async fn get(&self, store: &dyn Store, number: &str) -> Result<Option<Breaker>, StoreError> {
        let fresh = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0.is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        };
        if !fresh {
            let all = store.breakers().await?;
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            *g = (Some(Instant::now()), all.into_iter().collect());
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(g.1.get(number).cloned())
    }

    fn set(&self, number: &str, b: Option<Breaker>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match b {
            Some(b) => {
                g.1.insert(number.to_owned(), b);
            }
            None => {
                g.1.remove(number);
            }
        }
    }

    /// Forgets what it knows (the token was reloaded).
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g = (None, HashMap::new());
    }
}

pub struct Sender {
    pub store: Arc<dyn Store>,
    /// The master keys, to unwrap the contact's data key.
    pub keyring: crate::privacy::keys::Keyring,
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
}

impl Sender {
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
        if overdue || self.wake.outbox.sweep_due(IDLE_POLL) {
            let now_ms = self.clock.now() * 1000;
            let (ready, due) = self.store.sweep(Lane::Outbox, now_ms, SWEEP_LIMIT).await?;
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
                .with_label_values(&[record.state.name(), code.as_str()])
                .inc();
            if record.state == DeliveryState::Dead {
                m.dead_letters.inc();
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

    /// Handles one job.
    async fn one(
        &self,
        claim: &Claim,
        id: &str,
        sealed: &[u8],
        mut state: HeadState,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let now = self.clock.now();
        let now_ms = now * 1000;
        if state.next_at_ms > now_ms {
            return self.defer(claim, run, None, state.next_at_ms).await;
        }
        let job: Option<Job> = run
            .sealer
            .as_ref()
            .and_then(|sealer| sealer.open(sealed, &outbox_context(&claim.contact)).ok())
            .and_then(|p| serde_json::from_slice(&p).ok());
        let Some(job) = job else {
            let record = Delivery {
                job: format!("entry:{id}"),
                state: DeliveryState::Dead,
                at: now,
                wamid: None,
                kind: None,
                code: None,
                reason: Some("the queued job cannot be opened".into()),
                attempts: Some(0),
            };
            let letter = Letter {
                job: None,
                attempts: 0,
                code: None,
                reason: "the queued job cannot be opened".into(),
                at: now,
            };
            return self
                .give_up(claim, id, (record, Some(letter), None), run)
                .await;
        };
        let record = |state: DeliveryState, code: Option<i64>, reason: &str, attempts: u32| {
            record_of(&job, state, now, code, reason, attempts)
        };
        if matches!(job.message, super::Message::Erase) {
            // Everything before it (the final confirmation) is out: erase.
            // The outbox goes too, with this job and the claim's lease.
            // With every id the customer is known by (their links too).
            let aliases = self.store.erase_contact(&claim.contact, now).await?;
            aliases.iter().for_each(|a| self.keyring.forget(a));
            crate::metrics::global()
                .events
                .with_label_values(&[stats::ERASURES])
                .inc();
            // The data key is destroyed with the rest; this process forgets
            // it too (a later message starts with a new key).
            self.keyring.forget(&claim.contact);
            tracing::info!(contact = %claim.contact, "contact erased");
            self.audit_export(&claim.contact, "erasure_completed", now)
                .await;
            return Ok(Next::Stop);
        }
        if matches!(job.message, super::Message::Hook { .. }) {
            return self.deliver(claim, id, &job, state, now_ms, run).await;
        }
        if now > job.created_at + self.settings.get().max_age.as_secs() {
            let r = record(
                DeliveryState::Expired,
                None,
                "waited longer than outbox.max_age",
                state.attempts,
            );
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if job.message.needs_window() {
            let open = match job.window_at {
                Some(at) => Some(at),
                None => self
                    .store
                    .windows(&claim.contact)
                    .await?
                    .into_iter()
                    .find(|(n, _)| *n == job.phone_number_id)
                    .map(|(_, at)| at),
            };
            if open.is_none_or(|at| now >= at + WINDOW_SECS) {
                let r = record(
                    DeliveryState::OutsideWindow,
                    None,
                    "the 24-hour customer service window is closed",
                    state.attempts,
                );
                return self.give_up(claim, id, (r, None, None), run).await;
            }
        }
        let number = job.phone_number_id.clone();
        let mut probing = false;
        if let Some(b) = self.breakers.get(self.store.as_ref(), &number).await? {
            let next = now + self.settings.get().probe_interval.as_secs().max(1);
            if self.store.take_probe(&number, now, next).await? {
                tracing::info!(phone_number_id = %number, "sending paused; probing with the next message");
                probing = true;
            } else {
                let until = b.probe_at.max(now + 1) * 1000;
                return self.defer(claim, run, None, until).await;
            }
        }
        if state.in_flight_at.is_some() {
            // An earlier request's answer is not known (the process died,
            // or no answer came): if a status webhook says Meta has the
            // message, it is done; else wait `outbox.unconfirmed_wait` for
            // one, counted from when this is first seen (a restart may come
            // long after the request), then send it.
            let known = self
                .store
                .deliveries(&claim.contact)
                .await?
                .into_iter()
                .any(|d| d.job == job.id);
            if known {
                tracing::info!(contact = %claim.contact, job = %job.id, "a message sent before a crash or timeout was confirmed by Meta; not sent again");
                let mut done =
                    Finish::record(record(DeliveryState::Accepted, None, "", state.attempts));
                done.stats.push((stats::MESSAGES_OUT.to_owned(), 1));
                return self.finish(claim, id, done, run).await;
            }
            let wait = self.settings.get().unconfirmed_wait.as_millis() as u64;
            match state.unconfirmed_since {
                None => {
                    state.unconfirmed_since = Some(now_ms);
                    let head = serde_json::to_vec(&state)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    return self.defer(claim, run, Some(head), now_ms + wait).await;
                }
                Some(since) if now_ms < since + wait => {
                    return self.defer(claim, run, None, since + wait).await;
                }
                Some(_) => {
                    tracing::warn!(contact = %claim.contact, job = %job.id, "no status came for a message whose request got no answer; sending it again");
                    state.unconfirmed_since = None;
                }
            }
        }
        // A message that needs consent (marketing) is checked before it
        // takes a rate-limit slot, and again right before the request: a
        // STOP acknowledged before that point stops it; no record at all
        // means no.
        // The reason is `opted_out` (withdrawn) or `no_consent` (never
        // given): campaign reports count skips by it.
        if let Some(reason) = self.refused(claim, &job).await? {
            let r = record(DeliveryState::NoConsent, None, reason, state.attempts);
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if let Some(campaign) = crate::store::campaign_of_job(&job.id) {
            // A cancelled campaign sends nothing more, even what is queued.
            let cancelled =
                self.store.campaign(campaign).await?.is_some_and(|c| {
                    c.status == crate::domain::campaign::CampaignStatus::Cancelled
                });
            if cancelled {
                let r = record(
                    DeliveryState::Cancelled,
                    None,
                    "the campaign was cancelled",
                    state.attempts,
                );
                return self.give_up(claim, id, (r, None, None), run).await;
            }
        }
        if let Some(wait) = self.pace(&job, &claim.contact, run).await? {
            return self.defer(claim, run, None, now_ms + wait).await;
        }
        if let Some(reason) = self.refused(claim, &job).await? {
            let r = record(DeliveryState::NoConsent, None, reason, state.attempts);
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if job.origin == Origin::Business {
            // Recorded before the request: if the process dies before the
            // answer is written, the next sender waits for Meta's status
            // instead of sending the message a second time.
            state.in_flight_at = Some(now_ms);
            let head =
                serde_json::to_vec(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if !self.store.set_head(claim, head).await? {
                return Ok(Next::Stop);
            }
        }
        let answer = if matches!(job.message, super::Message::Export) {
            if state.attempts == 0 {
                self.audit_export(&claim.contact, "export_request", job.created_at)
                    .await;
            }
            self.send_export(&claim.contact, run.sealer.as_ref(), &job, now)
                .await?
        } else {
            self.graph.send(&job).await
        };
        match answer {
            Answer::Accepted { wamid } => {
                if matches!(job.message, super::Message::Export) {
                    self.audit_export(&claim.contact, "export_completed", now)
                        .await;
                }
                if probing {
                    self.store.close_breaker(Some(&number)).await?;
                    self.breakers.set(&number, None);
                    self.store.wake_deferred().await?;
                    self.wake.outbox.sweep_soon();
                    tracing::info!(phone_number_id = %number, "probe accepted; sending resumed");
                }
                let mut r = record(DeliveryState::Accepted, None, "", state.attempts);
                r.wamid = wamid.map(|w| self.pseudonymizer.tag("wamid", &w));
                if matches!(job.message, super::Message::MarkRead { .. }) {
                    // A read receipt is not a message: Meta sends no status
                    // for it, so it gets no record. Sending it twice after
                    // a crash changes nothing, so its removal rides on the
                    // claim's next write.
                    if !run.last {
                        run.sent.push(id.to_owned());
                        return Ok(Next::Finished);
                    }
                    r.job.clear();
                    r.wamid = None;
                }
                let mut done = Finish::record(r);
                if !matches!(job.message, super::Message::MarkRead { .. }) {
                    done.stats.push((stats::MESSAGES_OUT.to_owned(), 1));
                }
                if matches!(job.message, super::Message::Export) {
                    done.stats.push((stats::EXPORTS.to_owned(), 1));
                }
                self.finish(claim, id, done, run).await
            }
            Answer::Failed(f) => {
                self.failed(claim, id, (&job, f), &mut state, now_ms, run)
                    .await
            }
        }
    }

    async fn failed(
        &self,
        claim: &Claim,
        id: &str,
        (job, f): (&Job, Failure),
        state: &mut HeadState,
        now_ms: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let now = now_ms / 1000;
        let reason = if f.code == Some(MARKETING_STOPPED_CODE) {
            "the customer stopped marketing messages"
        } else {
            f.reason.as_str()
        };
        let record = |st: DeliveryState, attempts: u32| {
            record_of(job, st, now, f.code, reason, attempts.max(1))
        };
        if f.code.is_some() || f.http.is_some() {
            // Meta answered: it does not have the message, so a retry needs
            // not wait for a status.
            state.in_flight_at = None;
        }
        match f.class {
            Class::Permanent => {
                let r = record(DeliveryState::Failed, state.attempts + 1);
                // Meta says the customer stopped marketing messages: that
                // is a withdrawal of marketing consent, recorded with it.
                let consent = (f.code == Some(MARKETING_STOPPED_CODE)).then(|| {
                    crate::domain::consent::ConsentChange {
                        purpose: "marketing".into(),
                        granted: false,
                        at: now,
                        source: "meta:131050".into(),
                        policy_version: self.policy_version.clone(),
                        evidence: Some(format!("job:{}", job.id)),
                    }
                });
                self.give_up(claim, id, (r, None, consent), run).await
            }
            Class::Credentials => {
                let probe = self.settings.get().probe_interval.as_secs().max(1);
                let b = Breaker {
                    code: f.code.unwrap_or(0),
                    reason: f.reason.clone(),
                    since: now,
                    probe_at: now + probe,
                };
                tracing::error!(
                    phone_number_id = %job.phone_number_id,
                    code = ?f.code,
                    reason = %f.reason,
                    "Meta refused the access token or its permissions: sending paused for this number"
                );
                self.store
                    .open_breaker(&job.phone_number_id, b.clone())
                    .await?;
                self.breakers.set(&job.phone_number_id, Some(b));
                let head =
                    serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.defer(claim, run, Some(head), (now + probe) * 1000)
                    .await
            }
            Class::Transient | Class::Throttled | Class::PairLimit => {
                if state.attempts + 1 < self.settings.get().max_attempts {
                    let class = match f.class {
                        Class::Throttled => "throttled",
                        Class::PairLimit => "pair_limit",
                        _ => "transient",
                    };
                    crate::metrics::global()
                        .retries
                        .with_label_values(&[class])
                        .inc();
                }
                state.attempts += 1;
                state.last_code = f.code;
                state.last_error = f.reason.clone();
                if state.attempts >= self.settings.get().max_attempts {
                    let letter = Letter {
                        job: Some(job.clone()),
                        attempts: state.attempts,
                        code: f.code,
                        reason: f.reason.clone(),
                        at: now,
                    };
                    let r = record(DeliveryState::Dead, state.attempts);
                    return self.give_up(claim, id, (r, Some(letter), None), run).await;
                }
                let delay = if f.class == Class::PairLimit {
                    // Meta: retry after 4^X seconds, X = 0, 1, 2, …
                    let d = Duration::from_secs(4u64.saturating_pow(state.pair_hits));
                    state.pair_hits += 1;
                    d.min(self.settings.get().retry_cap)
                } else {
                    backoff(
                        self.settings.get().retry_base,
                        self.settings.get().retry_cap,
                        state.attempts,
                    )
                };
                let delay_ms = (delay.as_millis() as u64).max(1);
                if f.class == Class::Throttled {
                    self.store
                        .hold_rate(&format!("pn:{}", job.phone_number_id), delay_ms)
                        .await?;
                }
                tracing::warn!(
                    contact = %claim.contact,
                    job = %job.id,
                    attempt = state.attempts,
                    retry_in_ms = delay_ms,
                    reason = %f.reason,
                    "send failed; will retry"
                );
                self.retry_at(claim, run, state, now_ms + delay_ms).await
            }
        }
    }

    /// Builds the contact's export (never stored), uploads it as a JSON
    /// file and sends it as a document.
    async fn send_export(
        &self,
        contact: &ContactKey,
        sealer: Option<&Sealer>,
        job: &Job,
        now: u64,
    ) -> Result<Answer, StoreError> {
        let id = match &job.to {
            super::Recipient::WaId(w) => w.clone(),
            super::Recipient::UserId(u) => u.clone(),
        };
        let doc = crate::privacy::export::build(
            self.store.as_ref(),
            sealer,
            contact,
            &id,
            self.retention_days,
            now,
        )
        .await?;
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let media = match self
            .graph
            .upload(&job.phone_number_id, bytes, "application/json", EXPORT_FILE)
            .await
        {
            Ok(media) => media,
            Err(f) => return Ok(Answer::Failed(f)),
        };
        let document = Job {
            message: super::Message::Media {
                media: "document".into(),
                source: super::MediaRef::Id(media),
                caption: Some("A copy of the data we keep about you.".into()),
                filename: Some(EXPORT_FILE.into()),
            },
            ..job.clone()
        };
        Ok(self.graph.send(&document).await)
    }

    /// Posts an integration event to its receiver (see
    /// [`crate::integrations`]): retried with backoff for
    /// [`crate::integrations::DELIVERY_WINDOW`], then a dead letter. Each
    /// delivery is audited: the receiver, the event and the names of the
    /// fields it carried, never their values.
    async fn deliver(
        &self,
        claim: &Claim,
        id: &str,
        job: &Job,
        mut state: HeadState,
        now_ms: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let now = now_ms / 1000;
        let super::Message::Hook {
            receiver,
            event,
            contact,
            body,
            fields,
        } = &job.message
        else {
            return Ok(Next::Stop);
        };
        let record = |st: DeliveryState, reason: &str, attempts: u32| {
            record_of(job, st, now, None, reason, attempts)
        };
        let Some(to) = self.hooks.receiver(receiver).cloned() else {
            let r = record(
                DeliveryState::Dead,
                "the receiver is no longer configured",
                state.attempts,
            );
            return self.give_up(claim, id, (r, None, None), run).await;
        };
        if now > job.created_at + crate::integrations::DELIVERY_WINDOW.as_secs() {
            let reason = format!(
                "not delivered within 24 hours ({})",
                if state.last_error.is_empty() {
                    "no attempt"
                } else {
                    state.last_error.as_str()
                }
            );
            let letter = Letter {
                job: Some(job.clone()),
                attempts: state.attempts,
                code: None,
                reason: reason.clone(),
                at: now,
            };
            let r = record(DeliveryState::Dead, &reason, state.attempts);
            crate::metrics::global()
                .integration_deliveries
                .with_label_values(&[receiver.as_str(), "dead"])
                .inc();
            return self.give_up(claim, id, (r, Some(letter), None), run).await;
        }
        // An event about a contact erased since it was queued is not sent;
        // their `contact.erased` is.
        if event != crate::integrations::EventKind::ContactErased.name()
            && let Some(about) = ContactKey::parse(contact)
            && let Some(erased_at) = self.store.suppressed(&about).await?
            && job.created_at <= erased_at
        {
            let r = record(
                DeliveryState::Cancelled,
                "the contact was erased",
                state.attempts,
            );
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        // A field taken off the receiver's list since is not sent.
        let allowed = |f: &String| to.fields.iter().any(|g| g.name() == f);
        let (body, fields) = if fields.iter().all(allowed) {
            (body.clone(), fields.clone())
        } else {
            match crate::integrations::refilter(body, &to.fields) {
                Some(b) => b,
                None => {
                    let r = record(
                        DeliveryState::Dead,
                        "the queued event cannot be read",
                        state.attempts,
                    );
                    return self.give_up(claim, id, (r, None, None), run).await;
                }
            }
        };
        match self.hooks.post(&to, &job.id, body.as_bytes(), now).await {
            Ok(()) => {
                if crate::integrations::audit_share(self.store.as_ref(), receiver, event, contact)
                    .await
                {
                    use crate::privacy::audit::note;
                    let shared = Event {
                        at: now,
                        kind: "data_shared".to_owned(),
                        contact: Some(contact.clone()),
                        actor: Actor::System,
                        detail: Some(format!("{receiver}: {event} [{}]", fields.join(", "))),
                    };
                    note(self.store.as_ref(), &self.audit, shared).await;
                }
                crate::metrics::global()
                    .integration_deliveries
                    .with_label_values(&[receiver.as_str(), "delivered"])
                    .inc();
                let r = record(DeliveryState::Accepted, "", state.attempts + 1);
                self.finish(claim, id, Finish::record(r), run).await
            }
            Err(crate::integrations::Refused(reason)) => {
                crate::metrics::global()
                    .integration_deliveries
                    .with_label_values(&[receiver.as_str(), "retry"])
                    .inc();
                state.attempts += 1;
                state.last_error = reason;
                let settings = self.settings.get();
                let delay = backoff(settings.retry_base, settings.retry_cap, state.attempts);
                let delay_ms = (delay.as_millis() as u64).max(1);
                tracing::warn!(
                    contact = %claim.contact,
                    attempt = state.attempts,
                    retry_in_ms = delay_ms,
                    reason = %state.last_error,
                    "integration delivery failed; will retry"
                );
                self.retry_at(claim, run, &mut state, now_ms + delay_ms)
                    .await
            }
        }
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

    async fn audit_export(&self, contact: &ContactKey, kind: &str, at: u64) {
        use crate::privacy::audit::note;
        let actor = if kind.ends_with("_request") {
            Actor::Customer
        } else {
            Actor::System
        };
        let event = Event {
            at,
            kind: kind.to_owned(),
            contact: Some(contact.as_str().to_owned()),
            actor,
            detail: None,
        };
        note(self.store.as_ref(), &self.audit, event).await;
    }

    /// Why the contact's ledger does not allow the job now: `opted_out`
    /// (withdrawn) or `no_consent` (never given); `None`: it may go (a
    /// service message always may).
    async fn refused(&self, claim: &Claim, job: &Job) -> Result<Option<&'static str>, StoreError> {
        let Some(purpose) = &job.purpose else {
            return Ok(None);
        };
        let ledger = self.store.consent(&claim.contact).await?;
        Ok(crate::privacy::consent::refusal(&ledger, purpose))
    }

    /// Takes the rate-limit slots a job needs; `Some(ms)` when it must
    /// wait longer than a moment. The number's limit is taken for the
    /// claim's remaining jobs at once (as many as are free), so a reply of
    /// a few messages costs one call to the store.
    async fn pace(
        &self,
        job: &Job,
        contact: &ContactKey,
        run: &mut Run,
    ) -> Result<Option<u64>, StoreError> {
        if job.origin == Origin::Business {
            let key = format!("pair:{contact}");
            let interval = self.settings.get().pair_interval.as_micros() as u64;
            if let Some(wait) = self
                .take(&key, interval, self.settings.get().pair_burst, 1)
                .await?
                .err()
            {
                return Ok(Some(wait));
            }
        }
        let number = &job.phone_number_id;
        if let Some((n, taken)) = run.slots.get_mut(number)
            && *n > 0
            && taken.elapsed() < SLOT_LIFE
        {
            *n -= 1;
            return Ok(None);
        }
        let mps = u64::from(self.settings.get().messages_per_second.max(1));
        // In microseconds: 80/s is 12,500 µs (milliseconds would round it
        // to 12 ms, a little over Meta's limit, and cap the rate at 1,000/s).
        let interval = (1_000_000 / mps).max(1);
        let burst = (self.settings.get().messages_per_second / 10).max(1);
        match self
            .take(&format!("pn:{number}"), interval, burst, run.left)
            .await?
        {
            Ok(granted) => {
                run.slots
                    .insert(number.clone(), (granted.saturating_sub(1), Instant::now()));
                Ok(None)
            }
            Err(wait) => Ok(Some(wait)),
        }
    }

    /// Takes up to `want` slots of a rate limit, sleeping through short
    /// waits: `Ok(slots)`, or `Err(ms)` for a longer wait.
    async fn take(
        &self,
        key: &str,
        interval: u64,
        burst: u32,
        want: u32,
    ) -> Result<Result<u32, u64>, StoreError> {
        loop {
            let grant = self.store.take_rate(key, interval, burst, want).await?;
            if grant.granted > 0 {
                return Ok(Ok(grant.granted));
            }
            if grant.wait_ms > SHORT_WAIT_MS {
                return Ok(Err(grant.wait_ms));
            }
            tokio::time::sleep(Duration::from_millis(grant.wait_ms)).await;
        }
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
