//! The worker: takes one contact at a time from the inbox (any instance
//! may take any contact, never two at once), runs each pending event
//! through the flow engine in the order Meta sent them, and commits the new
//! session, the outbound jobs and the inbox acknowledgement atomically.
//!
//! [`Worker::try_work_next`] does one unit of work and says what happened,
//! so tests can drive it step by step; [`Worker::run`] loops on it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::consent::{Decision, MARKETING, decide};

use crate::domain::consent::ConsentChange;

use crate::clock::Clock;
use crate::domain::ContactKey;
use crate::flow::engine::{self, ContactView, Effect, Input, Outgoing, Session};
use crate::flow::normalize;
pub use crate::outbox::{Job, Recipient};
use crate::outbox::{Message as OutMessage, Origin, WINDOW_SECS};

use crate::privacy::crypto::Sealer;
use crate::privacy::keys::Keyring;
use crate::privacy::keywords::{self, Command};
use crate::privacy::pseudonym::Pseudonymizer;
use crate::store::{
    Claim, Commit, Committed, Delivery, DeliveryState, Lane, Queue, Store, StoreError,
};
use crate::webhook::events::{AgentAction, Event, InboundMessage, StatusUpdate};
use crate::webhook::payload::{Message, MessageKind, StatusKind};

/// A worker's lease on a contact: short, and renewed by the process's
/// [`crate::store::lease::Keeper`] while the claim is worked on, so the
/// contacts of a process that died are free again within it.
pub const LEASE: Duration = crate::store::lease::LEASE;
/// Most inbox entries handled in one claim.
pub const BATCH: usize = 50;
/// How often the store is swept for contacts this instance was not handed
/// (queued by another instance, left by a crash, timeouts come due).
const SWEEP: Duration = Duration::from_millis(100);
/// Most contacts one sweep hands over.
const SWEEP_LIMIT: usize = 64;
/// However much handed-over work there is, the store is swept at least
/// this often.
const SWEEP_ANYWAY: Duration = Duration::from_secs(1);

/// What a contact's conversation keeps between messages (sealed in the
/// store as its session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub session: Option<Session>,
    /// Where the last message came from, for replies a timeout triggers.
    #[serde(default)]
    pub recipient: Option<Recipient>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// When the customer last wrote to that number (Unix s): the start of
    /// the 24-hour window replies rely on.
    #[serde(default)]
    pub last_inbound: Option<u64>,
    /// The flow steps run while handling this claim (anonymous statistics;
    /// never stored with the session).
    #[serde(skip)]
    pub steps_run: Vec<String>,
    /// The flows that ended while handling this claim, with the variables
    /// they collected (for `flow.completed`; never stored).
    #[serde(skip)]
    pub completed: Vec<(String, std::collections::BTreeMap<String, String>)>,
}

/// Whether the engine's effects hand the conversation to a person.
fn hands_off(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Action { action, .. } if action == "handoff"))
}

/// The statistics' names of the steps an engine run visited.
fn steps_run(flows: &crate::flow::Flows, visited: &[(usize, usize)]) -> Vec<String> {
    visited
        .iter()
        .filter_map(|(f, s)| {
            let flow = flows.flows.get(*f)?;
            Some(crate::store::stats::step(&flow.id, &flow.steps.get(*s)?.id))
        })
        .collect()
}

/// What whatsify keeps about a contact beyond one conversation: sealed in
/// the store, kept `privacy.retention_days` after the contact's last
/// message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The contact as flows see it: the name (one the customer chose wins
    /// over their WhatsApp profile name) and tags.
    #[serde(default)]
    pub contact: ContactView,
    /// The name on the customer's WhatsApp profile, as Meta last sent it.
    #[serde(default)]
    pub whatsapp_name: Option<String>,
    /// The customer chose `contact.name` (a flow's name step).
    #[serde(default)]
    pub name_chosen: bool,
    /// The customer's first and latest message (Unix s).
    #[serde(default)]
    pub first_seen: Option<u64>,
    #[serde(default)]
    pub last_seen: Option<u64>,
    /// The privacy policy version the contact was last shown (or that was
    /// in force at their first message).
    #[serde(default)]
    pub policy_version: Option<String>,
    /// Marketing consent as this contact's messages have set it so far
    /// (the ledger is the record; this decides the confirmations).
    #[serde(default)]
    pub marketing: Option<bool>,
    /// When the last opt-out and opt-in confirmations were sent (Unix s):
    /// a command that changes nothing is not confirmed twice in 24 h.
    #[serde(default)]
    pub opt_out_confirmed_at: Option<u64>,
    #[serde(default)]
    pub opt_in_confirmed_at: Option<u64>,
    /// When the customer asked to erase their data (the buttons to
    /// confirm are valid `privacy.erase_confirm_minutes`).
    #[serde(default)]
    pub erase_asked_at: Option<u64>,
    /// What the audit log holds of the erasure requests (an unconfirmed
    /// one is audited once a day).
    #[serde(default, skip_serializing_if = "is_default")]
    pub erase_audit: crate::privacy::requests::EraseAudit,
    /// The second and evidence of the customer's last STOP (or "Stop
    /// promotions"), recorded or not: a START in that same second loses to
    /// it, as the ledger's rule has it, even when that STOP was a repeat
    /// that changed nothing and so is not on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrew: Option<(u64, String)>,
    /// When a copy of their data was last queued (one a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_asked_at: Option<u64>,
    /// Since when a person has the conversation (a flow's `handoff`):
    /// flows do not answer until the agent closes it.
    #[serde(default)]
    pub handed_off_at: Option<u64>,
    /// Where the contact's messages go (their wa_id, or their
    /// business-scoped user id): campaigns addressed by tag or to every
    /// consenting contact reach them through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Every id the customer's messages came with (their number and their
    /// business-scoped user id, when Meta gave them): the export lists
    /// both. Sealed with the rest of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The CRM and helpdesk receivers events about the contact were queued
    /// for: an erasure or a rectification reaches each of them, and the
    /// contact's copy of their data names them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub shared_with: std::collections::BTreeSet<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// How many earlier messages `handoff.requested` carries (both ways).
const RECENT: usize = 20;

/// What a step did, for [`Worker::share`].
struct Step<'a> {
    claim: &'a Claim,
    /// What each entry (or the timeout) did, in order.
    causes: &'a [Cause],
    jobs: &'a [Job],
    history: &'a [crate::privacy::export::HistoryItem],
    now: u64,
}

/// What one inbox entry (or a timeout) did that receivers may hear of.
#[derive(Default)]
struct Cause {
    /// The entry's id, or `tick<at>`: part of each event's id.
    key: String,
    created: bool,
    /// Consent recorded at ingress, then what the flows recorded.
    consent: Vec<ConsentChange>,
    /// A handed-off customer's message (its text, if any).
    forwarded: Option<Option<String>>,
    completed: Vec<(String, std::collections::BTreeMap<String, String>)>,
    handoff: bool,
    export: bool,
    renamed: bool,
    erased: bool,
}

/// Where a step stood before an entry, to tell what the entry did.
struct Before {
    consent: usize,
    completed: usize,
    handed_off: bool,
    name: Option<String>,
    exports: usize,
    erasures: usize,
}

impl Before {
    fn of(
        consent: &[ConsentChange],
        jobs: &[Job],
        state: &Conversation,
        profile: &Profile,
    ) -> Self {
        Before {
            consent: consent.len(),
            completed: state.completed.len(),
            handed_off: profile.handed_off_at.is_some(),
            name: profile.contact.name.clone(),
            exports: count(jobs, |m| matches!(m, OutMessage::Export)),
            erasures: count(jobs, |m| matches!(m, OutMessage::Erase)),
        }
    }

    /// What happened since, as caused by `key`.
    fn cause(
        &self,
        key: String,
        (consent, jobs): (&[ConsentChange], &[Job]),
        (state, profile): (&Conversation, &Profile),
        mut ingress: Vec<ConsentChange>,
    ) -> Cause {
        ingress.extend(
            consent
                .get(self.consent..)
                .unwrap_or_default()
                .iter()
                .cloned(),
        );
        Cause {
            key,
            created: false,
            consent: ingress,
            forwarded: None,
            completed: state
                .completed
                .get(self.completed..)
                .unwrap_or_default()
                .to_vec(),
            handoff: !self.handed_off && profile.handed_off_at.is_some(),
            export: count(jobs, |m| matches!(m, OutMessage::Export)) > self.exports,
            renamed: self.name.is_some() && self.name != profile.contact.name,
            erased: count(jobs, |m| matches!(m, OutMessage::Erase)) > self.erasures,
        }
    }
}

fn count(jobs: &[Job], what: impl Fn(&OutMessage) -> bool) -> usize {
    jobs.iter().filter(|j| what(&j.message)).count()
}

/// The ids of the buttons that confirm or decline an erasure.
pub const ERASE_YES: &str = "whatsify_erase_yes";
pub const ERASE_NO: &str = "whatsify_erase_no";
const ERASE_YES_TITLE: &str = "Yes, delete it";
const ERASE_NO_TITLE: &str = "No, keep it";

/// The context a contact's profile is sealed under.
pub fn profile_context(contact: &ContactKey) -> Vec<u8> {
    format!("profile:{contact}").into_bytes()
}

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
    pub flows: crate::flow::SharedFlows,
    pub session_ttl: Duration,
    /// Queue a read receipt for each answered message.
    pub mark_read: bool,
    pub clock: Clock,
    pub wake: crate::shutdown::Wakeups,
    /// `privacy.policy_version`, stamped on consent it records.
    pub policy_version: String,
    /// The answers to STOP, START and HELP, and the policy notice.
    pub privacy_texts: crate::privacy::keywords::Texts,
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

/// What handling an event adds to the commit: outbound jobs and consent
/// ledger entries.
type Outputs<'a> = (&'a mut Vec<Job>, &'a mut Vec<ConsentChange>);

/// Where a conversation's replies go.
struct Destination<'a> {
    to: &'a Recipient,
    /// The business number the customer wrote to.
    phone_number_id: &'a str,
    /// The customer's last message time: the window replies rely on.
    window_at: Option<u64>,
    /// The message being answered: its time and a keyed hash of its id
    /// (the evidence of consent a flow step records).
    cause: Option<(u64, String)>,
}

/// What a status webhook says about one of our messages.
fn delivery_of(update: &StatusUpdate, pseudonymizer: &Pseudonymizer) -> Option<Delivery> {
    let st = update.status.parse().ok()?;
    let state = match &st.status {
        StatusKind::Sent => DeliveryState::Sent,
        StatusKind::Delivered => DeliveryState::Delivered,
        StatusKind::Read => DeliveryState::Read,
        StatusKind::Played => DeliveryState::Played,
        StatusKind::Failed => DeliveryState::Failed,
        StatusKind::Other(_) => return None,
    };
    let code = st.errors.first().and_then(|e| e.code);
    Some(Delivery {
        job: st.biz_opaque_callback_data.clone().unwrap_or_default(),
        state,
        at: st.timestamp.0.max(0) as u64,
        wamid: Some(pseudonymizer.tag("wamid", &st.id)),
        kind: None,
        code,
        reason: (state == DeliveryState::Failed).then(|| match code {
            Some(c) => format!("status webhook: Meta error {c}"),
            None => "status webhook: failed".to_owned(),
        }),
        attempts: None,
    })
}

/// The context a contact's session is sealed under.
pub fn session_context(contact: &ContactKey) -> Vec<u8> {
    format!("session:{contact}").into_bytes()
}

fn outbox_context(contact: &ContactKey) -> Vec<u8> {
    Queue::Outbox(contact.clone()).name().into_bytes()
}

/// A plain text message.
fn text(body: String) -> OutMessage {
    OutMessage::Flow {
        message: Outgoing::Text {
            body,
            preview_url: false,
        },
    }
}

/// What the engine sees of an inbound message.
pub fn input_of(message: &Message) -> Input {
    match &message.kind {
        MessageKind::Text(t) => Input::Text(t.body.clone()),
        MessageKind::Interactive(i) => match (&i.button_reply, &i.list_reply) {
            (Some(c), _) | (None, Some(c)) => Input::Choice {
                id: c.id.clone(),
                title: c.title.clone(),
            },
            _ => Input::Unreadable,
        },
        MessageKind::Button(b) => Input::Choice {
            id: b.payload.clone(),
            title: b.text.clone(),
        },
        _ => Input::Unreadable,
    }
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
        if overdue || self.wake.inbox.sweep_due(SWEEP) {
            let now = self.clock.now();
            let (ready, due) = self.store.sweep(Lane::Inbox, now, SWEEP_LIMIT).await?;
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

    /// The contact's data key, when it has one.
    fn keyring_sealer(&self, claim: &Claim) -> Result<Option<Sealer>, StoreError> {
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
    async fn sealer_for(&self, claim: &mut Claim) -> Result<Sealer, StoreError> {
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
                crate::privacy::keys::data_key_ttl_for(self.profile_ttl),
            )
            .await?;
        let sealer = self
            .keyring
            .unwrap(&claim.contact, &stored)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        claim.data_key = Some(stored);
        Ok(sealer)
    }

    fn open_state(&self, claim: &Claim, sealer: Option<&Sealer>) -> Conversation {
        claim
            .session
            .as_ref()
            .zip(sealer)
            .and_then(|(sealed, sealer)| sealer.open(sealed, &session_context(&claim.contact)).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .unwrap_or_default()
    }

    async fn commit(
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

    /// Handles a claim's entries; with `tick`, first fires a due timeout.
    async fn work(&self, mut claim: Claim, tick: Option<u64>) -> Result<Outcome, StoreError> {
        let contact = claim.contact.clone();
        let sealer = self.sealer_for(&mut claim).await?;
        let mut state = self.open_state(&claim, Some(&sealer));
        let opened: Option<Profile> = claim
            .profile
            .as_ref()
            .and_then(|sealed| sealer.open(sealed, &profile_context(&contact)).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        // A profile that is there but cannot be read is not overwritten.
        let unreadable = claim.profile.is_some() && opened.is_none();
        if unreadable {
            tracing::error!(contact = %contact, "profile cannot be opened; left as it is");
        }
        let mut profile = opened.unwrap_or_default();
        let profile_before = profile.clone();
        let queue = Queue::Contact(contact.clone());
        let mut jobs = Vec::new();
        let mut acked = Vec::new();
        let mut deliveries = Vec::new();
        let mut consent = Vec::new();
        let mut window: Option<(String, u64)> = None;
        let mut history = Vec::new();
        let mut messages_in = 0u64;
        // What each entry did, for the CRM and helpdesk receivers.
        let sharing = !self.hooks.receivers().is_empty();
        let mut causes: Vec<Cause> = Vec::new();
        let mut first_message = claim.profile.is_none();
        let now = self.clock.now();
        if let Some(at) = tick
            && let Some(to) = state.recipient.clone()
        {
            let before = Before::of(&consent, &jobs, &state, &profile);
            let flows = self.flows.current();
            let out = engine::step(
                &flows,
                state.session.take(),
                &profile.contact,
                &Input::Tick,
                at,
                self.session_ttl.as_secs(),
            );
            state.steps_run.extend(steps_run(&flows, &out.visited));
            state.completed.extend(out.completed.clone());
            state.session = out.session;
            profile.contact = out.contact;
            if hands_off(&out.effects) {
                profile.handed_off_at = Some(now);
            }
            let number = state.phone_number_id.clone().unwrap_or_default();
            let dest = Destination {
                to: &to,
                phone_number_id: &number,
                window_at: state.last_inbound,
                cause: None,
            };
            self.effects(&contact, out.effects, dest, (&mut jobs, &mut consent), now);
            if let Some(granted) = consent.last().map(|c| c.granted) {
                profile.marketing = Some(granted);
            }
            if sharing {
                causes.push(before.cause(
                    format!("tick{at}"),
                    (&consent, &jobs),
                    (&state, &profile),
                    Vec::new(),
                ));
            }
        }
        for entry in &claim.entries {
            acked.push(entry.id.clone());
            let event: Option<Event> = sealer
                .open(&entry.sealed, queue.name().as_bytes())
                .ok()
                .and_then(|plain| serde_json::from_slice(&plain).ok());
            let Some(event) = event else {
                tracing::error!(contact = %contact, entry = %entry.id, "inbox entry cannot be opened; skipped");
                continue;
            };
            let before = Before::of(&consent, &jobs, &state, &profile);
            let mut ingress = Vec::new();
            let mut forwarded: Option<Option<String>> = None;
            let is_message = matches!(event, Event::Message(_));
            if sharing {
                ingress.extend(self.recorded_at_ingress(&event, &entry.id, now));
            }
            match event {
                Event::Message(m) => {
                    messages_in += 1;
                    let handed_off = profile.handed_off_at.is_some();
                    if let Ok(message) = m.message.parse() {
                        // What the customer sent is theirs: kept (sealed)
                        // for their copy, until the retention period ends.
                        history.push(crate::privacy::export::inbound(
                            message.timestamp.0.max(0) as u64,
                            message.kind.type_name(),
                            &input_of(&message),
                        ));
                    }
                    if handed_off {
                        // A person has the conversation: the message goes
                        // to the helpdesk (`message.received`).
                        let text = m.message.parse().ok().and_then(|msg| match input_of(&msg) {
                            Input::Text(t) => Some(t),
                            Input::Choice { title, .. } => Some(title),
                            _ => None,
                        });
                        forwarded = Some(text);
                    }
                    let out = (&mut jobs, &mut consent);
                    if let Some(at) =
                        self.handle_message(&contact, &m, (&mut state, &mut profile), out, now)
                        && window.as_ref().is_none_or(|(_, w)| at > *w)
                    {
                        window = Some((m.origin.phone_number_id.clone(), at));
                    }
                }
                Event::Status(s) => {
                    if let Some(d) = delivery_of(&s, &self.pseudonymizer) {
                        if d.code == Some(crate::outbox::graph::MARKETING_STOPPED_CODE) {
                            tracing::info!(contact = %contact, "customer stopped marketing messages (131050)");
                            consent.push(ConsentChange {
                                purpose: MARKETING.to_owned(),
                                granted: false,
                                at: d.at,
                                source: "meta:131050".to_owned(),
                                policy_version: self.policy_version.clone(),
                                evidence: d.wamid.clone(),
                            });
                            profile.marketing = Some(false);
                        }
                        deliveries.push(d);
                    }
                }
                Event::Preference(p) => {
                    // WhatsApp's own Stop/Resume for marketing messages: on
                    // record since ingress; confirmed like STOP and START.
                    if let Ok(pref) = p.preference.parse()
                        && pref.category == "marketing_messages"
                        && (pref.value == "stop" || pref.value == "resume")
                    {
                        let command = if pref.value == "stop" {
                            Command::OptOut
                        } else {
                            Command::OptIn
                        };
                        let turn = (&mut state, &mut profile);
                        if p.grant_refused && command == Command::OptIn {
                            self.grant_refused(&contact, &state, &mut jobs, now);
                        } else {
                            self.privacy_command(&contact, command, turn, &mut jobs, now);
                        }
                    }
                }
                Event::Agent(a) => match a.action {
                    AgentAction::Message { message } => {
                        match (state.recipient.clone(), state.phone_number_id.clone()) {
                            (Some(to), Some(number)) => {
                                let origin = if message.needs_window() {
                                    Origin::Reply
                                } else {
                                    Origin::Business
                                };
                                let mut job = self.reply(&state, &to, &number, message, now);
                                job.origin = origin;
                                jobs.push(job);
                            }
                            _ => {
                                tracing::warn!(contact = %contact, "agent message for a contact with no conversation; dropped")
                            }
                        }
                    }
                    AgentAction::Close => {
                        tracing::info!(contact = %contact, "handoff closed; flows answer again");
                        profile.handed_off_at = None;
                        state.session = None;
                    }
                },
                _ => {}
            }
            if sharing {
                let mut cause = before.cause(
                    entry.id.clone(),
                    (&consent, &jobs),
                    (&state, &profile),
                    ingress,
                );
                cause.forwarded = forwarded;
                if is_message && first_message {
                    cause.created = true;
                    first_message = false;
                }
                causes.push(cause);
            }
        }
        state.completed.clear();
        if !consent.is_empty() || causes.iter().any(|c| !c.consent.is_empty()) {
            let refused = self
                .changes_only(&contact, &mut consent, &mut causes)
                .await?;
            if refused {
                // A flow's opt-in beyond the day's grants: not recorded,
                // and the customer is told.
                profile.marketing = Some(false);
                self.grant_refused(&contact, &state, &mut jobs, now);
            }
        }
        if sharing {
            let step = Step {
                claim: &claim,
                causes: &causes,
                jobs: &jobs,
                history: &history,
                now,
            };
            self.share(step, &sealer, &mut profile).await?;
        }
        let session = serde_json::to_vec(&state)
            .ok()
            .and_then(|plain| sealer.seal(&plain, &session_context(&contact)).ok());
        let mut outbox = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let plain = serde_json::to_vec(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let sealed = sealer
                .seal(&plain, &outbox_context(&contact))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            outbox.push(sealed);
        }
        let events = acked.len();
        let wake_at = state.session.as_ref().and_then(|s| s.deadline);
        history.extend(jobs.iter().filter_map(crate::privacy::export::outbound));
        let mut sealed_history = Vec::with_capacity(history.len());
        for item in &history {
            let plain = serde_json::to_vec(item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sealed_history.push(
                sealer
                    .seal(&plain, &crate::privacy::export::history_context(&contact))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        let confirmed = jobs.iter().any(|j| matches!(j.message, OutMessage::Erase));
        let erasure = crate::privacy::requests::erasure_events(
            (profile_before.erase_asked_at, profile.erase_asked_at),
            confirmed,
            &mut profile.erase_audit,
            now,
        );
        // Written only when something changed (a status update is not
        // the contact writing in, and does not extend the profile's life).
        let sealed_profile = if profile != profile_before && !unreadable {
            let plain =
                serde_json::to_vec(&profile).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Some(
                sealer
                    .seal(&plain, &profile_context(&contact))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        } else {
            None
        };
        let mut audited: Vec<crate::domain::audit::Event> = consent
            .iter()
            .map(|c| crate::privacy::audit::of_consent(contact.as_str(), c))
            .collect();
        let erase_event = |kind: &str| crate::domain::audit::Event {
            at: now,
            kind: kind.to_owned(),
            contact: Some(contact.as_str().to_owned()),
            actor: crate::domain::audit::Actor::Customer,
            detail: None,
        };
        audited.extend(erasure.into_iter().map(erase_event));
        // Anonymous: how many messages came in, which steps ran.
        let mut stats: crate::store::Counts = Vec::new();
        if messages_in > 0 {
            stats.push((crate::store::stats::MESSAGES_IN.to_owned(), messages_in));
        }
        let mut steps: std::collections::BTreeMap<String, u64> = Default::default();
        for step in std::mem::take(&mut state.steps_run) {
            *steps.entry(step).or_default() += 1;
        }
        stats.extend(steps);
        let commit = Commit {
            acked,
            session,
            session_ttl: self.session_ttl,
            outbox,
            wake_at,
            window,
            deliveries,
            consent,
            profile: sealed_profile,
            history: sealed_history,
            profile_ttl: self.profile_ttl,
            stats,
        };
        let counted = (commit.stats.clone(), commit.consent.clone());
        match self.store.commit(&claim, commit).await? {
            Committed::LeaseLost => {
                tracing::warn!(contact = %contact, "lease lost; another worker redoes the batch");
                Ok(Outcome::LeaseLost(contact))
            }
            Committed::Done { inbox_left } => {
                crate::metrics::global().counted(&counted.0, counted.1.iter());
                tracing::info!(contact = %contact, events, jobs = jobs.len(), "conversation step");
                for event in audited {
                    crate::privacy::audit::note(self.store.as_ref(), &self.audit, event).await;
                }
                if !jobs.is_empty() {
                    self.wake.outbox.push(contact.clone());
                }
                if inbox_left > 0 {
                    self.wake.inbox.push(contact.clone());
                }
                Ok(Outcome::Worked {
                    contact,
                    events,
                    jobs: jobs.len(),
                })
            }
        }
    }

    /// A flow's `export` action makes a copy once a day, as MY DATA does:
    /// asked again sooner, the customer is told so instead.
    fn bound_exports(&self, profile: &mut Profile, jobs: &mut [Job], now: u64) {
        for job in jobs.iter_mut() {
            if !matches!(job.message, OutMessage::Export) {
                continue;
            }
            if crate::privacy::requests::export_allowed(profile.export_asked_at, now) {
                profile.export_asked_at = Some(now);
            } else {
                job.message = text(self.privacy_texts.export_again.clone());
            }
        }
    }

    /// Keeps only the consent entries that change something, so that a
    /// customer repeating a choice (a flow's opt-in tapped again, STOP sent
    /// twice) adds nothing to the kept-forever ledger or the audit log and
    /// no `consent.changed` event: the step's own entries are judged
    /// against the ledger, and those recorded at ingress are kept only if
    /// the ledger holds them (ingress recorded only the ones that changed
    /// something). A grant of the step's own beyond the day's grants is
    /// not kept either (see [`crate::domain::consent::decide`]); answers
    /// whether there was one.
    async fn changes_only(
        &self,
        contact: &ContactKey,
        consent: &mut Vec<ConsentChange>,
        causes: &mut [Cause],
    ) -> Result<bool, StoreError> {
        use crate::privacy::consent::on_record;
        let ledger = self.store.consent(contact).await?;
        let mut all = ledger.clone();
        let mut kept = Vec::new();
        let mut refused = false;
        for c in consent.iter() {
            match decide(&all, c) {
                Decision::Record => {
                    all.push(c.clone());
                    kept.push(c.clone());
                }
                Decision::Refused => refused = true,
                Decision::Same => {}
            }
        }
        for cause in causes.iter_mut() {
            cause
                .consent
                .retain(|c| kept.contains(c) || (!consent.contains(c) && on_record(&ledger, c)));
        }
        *consent = kept;
        Ok(refused)
    }

    /// Runs one message through the flows; returns its time (Unix s),
    /// which opens the 24-hour window.
    fn handle_message(
        &self,
        contact: &ContactKey,
        m: &InboundMessage,
        (state, profile): (&mut Conversation, &mut Profile),
        (jobs, consent): Outputs<'_>,
        now: u64,
    ) -> Option<u64> {
        let (Ok(message), Ok(meta_profile)) = (m.message.parse(), m.contact.parse()) else {
            tracing::error!(contact = %contact, "inbound message does not parse; skipped");
            return None;
        };
        let sent_at = message.timestamp.0.max(0) as u64;
        if now >= sent_at + WINDOW_SECS {
            // Meta retried it for a day or more: its window has closed, so
            // it gets no free-form answer. (Privacy commands are still
            // honoured by the privacy stage, which runs before the flows.)
            tracing::warn!(contact = %contact, age_s = now - sent_at, "inbound message older than 24 h: no flow answer");
            return Some(sent_at);
        }
        profile.first_seen.get_or_insert(sent_at);
        profile.last_seen = Some(profile.last_seen.unwrap_or(0).max(sent_at));
        if let Some(name) = meta_profile.profile.and_then(|p| p.name) {
            profile.whatsapp_name = Some(name);
        }
        if !profile.name_chosen {
            profile.contact.name.clone_from(&profile.whatsapp_name);
        }
        let (wa_id, user_id) = (
            message.from.as_ref().or(meta_profile.wa_id.as_ref()),
            message
                .from_user_id
                .as_ref()
                .or(meta_profile.user_id.as_ref()),
        );
        if let Some(w) = wa_id.filter(|w| crate::domain::WaId::parse(w).is_some()) {
            profile.wa_id = Some(w.clone());
        }
        if let Some(u) = user_id.filter(|u| crate::domain::UserId::parse(u).is_some()) {
            profile.user_id = Some(u.clone());
        }
        let to = match (wa_id, user_id) {
            (Some(w), _) => Recipient::WaId(w.clone()),
            (None, Some(u)) => Recipient::UserId(u.clone()),
            (None, None) => return Some(sent_at),
        };
        if state.phone_number_id.as_deref() != Some(m.origin.phone_number_id.as_str()) {
            state.last_inbound = None;
        }
        state.recipient = Some(to.clone());
        profile.recipient = Some(to.clone());
        state.phone_number_id = Some(m.origin.phone_number_id.clone());
        state.last_inbound = Some(state.last_inbound.unwrap_or(0).max(sent_at));
        if self.mark_read {
            // Marking a message read marks the earlier ones too: one
            // receipt per batch and number is enough.
            jobs.retain(|j| {
                !(matches!(j.message, OutMessage::MarkRead { .. })
                    && j.phone_number_id == m.origin.phone_number_id)
            });
            jobs.push(Job {
                id: uuid::Uuid::new_v4().to_string(),
                phone_number_id: m.origin.phone_number_id.clone(),
                to: to.clone(),
                message: OutMessage::MarkRead {
                    message_id: message.id.clone(),
                },
                created_at: now,
                origin: Origin::Reply,
                window_at: Some(sent_at),
                purpose: None,
            });
        }
        let input = input_of(&message);
        let flows = self.flows.current();
        // STOP and START were decided at ingress, where the consent was
        // recorded: the answer follows that decision, not a second reading
        // (the flows may have been reloaded since).
        let command = match m.consent {
            Some(false) => Some(Command::OptOut),
            Some(true) => Some(Command::OptIn),
            None => match &input {
                Input::Text(t) => keywords::classify(t, &flows.privacy),
                Input::Choice { id, title } => keywords::classify_choice(id, title, &flows.privacy),
                _ => None,
            }
            .filter(|c| !matches!(c, Command::OptOut | Command::OptIn)),
        };
        let evidence = self.pseudonymizer.tag("wamid", &message.id);
        match (m.consent, &profile.withdrew) {
            (Some(false), _) => profile.withdrew = Some((sent_at, evidence.clone())),
            (Some(true), Some((at, stop))) if *at == sent_at => {
                // In doubt, no marketing: the STOP of this second goes on
                // record (again, if it was; the ledger keeps it once).
                consent.push(ConsentChange {
                    purpose: MARKETING.to_owned(),
                    granted: false,
                    at: sent_at,
                    source: "keyword".to_owned(),
                    policy_version: self.policy_version.clone(),
                    evidence: Some(stop.clone()),
                });
            }
            _ => {}
        }
        self.policy_notice(profile, (jobs, consent), &to, m, (sent_at, &evidence), now);
        if let Some(asked) = profile.erase_asked_at.take() {
            // The answer to "Delete everything?", while it is valid; any
            // other message lets the request lapse and goes on as usual.
            let yes = normalize(ERASE_YES_TITLE);
            let no = normalize(ERASE_NO_TITLE);
            let answer = match &input {
                Input::Choice { id, .. } if id == ERASE_YES => Some(true),
                Input::Choice { id, .. } if id == ERASE_NO => Some(false),
                Input::Text(t) if normalize(t) == yes => Some(true),
                Input::Text(t) if normalize(t) == no => Some(false),
                _ => None,
            };
            if now < asked + self.erase_confirm.as_secs() {
                match answer {
                    Some(true) => {
                        tracing::info!(contact = %contact, "erasure confirmed");
                        let done = self.privacy_texts.erase_done.clone();
                        jobs.push(self.reply(
                            state,
                            &to,
                            &m.origin.phone_number_id,
                            text(done),
                            now,
                        ));
                        jobs.push(self.reply(
                            state,
                            &to,
                            &m.origin.phone_number_id,
                            OutMessage::Erase,
                            now,
                        ));
                        return Some(sent_at);
                    }
                    Some(false) => {
                        let kept = self.privacy_texts.erase_kept.clone();
                        jobs.push(self.reply(
                            state,
                            &to,
                            &m.origin.phone_number_id,
                            text(kept),
                            now,
                        ));
                        return Some(sent_at);
                    }
                    None => {}
                }
            }
        }
        if let Some(command) = command {
            // Before any flow, whatever the session: the consent change is
            // on record since ingress; here the customer gets the answer.
            if command == Command::OptIn && m.grant_refused {
                self.grant_refused(contact, state, jobs, now);
            } else {
                self.privacy_command(contact, command, (state, profile), jobs, now);
            }
            return Some(sent_at);
        }
        if profile.handed_off_at.is_some() {
            // A person has the conversation: the flows stay quiet (the
            // message is in the history for the agent).
            tracing::info!(contact = %contact, "handed off: not answered by the flows");
            return Some(sent_at);
        }
        let out = engine::step(
            &flows,
            state.session.take(),
            &profile.contact,
            &input,
            now,
            self.session_ttl.as_secs(),
        );
        state.steps_run.extend(steps_run(&flows, &out.visited));
        state.completed.extend(out.completed.clone());
        state.session = out.session;
        profile.contact = out.contact;
        if hands_off(&out.effects) {
            tracing::info!(contact = %contact, "conversation handed off to a person");
            profile.handed_off_at = Some(now);
        }
        // A name the customer gives (a flow's `set` of contact.name, or its
        // `update_name` action) wins over the WhatsApp name from now on.
        if out.effects.iter().any(|e| match e {
            Effect::SetName { .. } => true,
            Effect::Action { action, .. } => action == "update_name",
            _ => false,
        }) {
            profile.name_chosen = true;
        }
        let window_at = state.last_inbound;
        let dest = Destination {
            to: &to,
            phone_number_id: &m.origin.phone_number_id,
            window_at,
            cause: Some((sent_at, evidence)),
        };
        let before = consent.len();
        let jobs_before = jobs.len();
        self.effects(contact, out.effects, dest, (jobs, consent), now);
        self.bound_exports(profile, &mut jobs[jobs_before..], now);
        if let Some(granted) = consent[before..]
            .iter()
            .rev()
            .find(|c| c.purpose == MARKETING)
            .map(|c| c.granted)
        {
            profile.marketing = Some(granted);
        }
        Some(sent_at)
    }

    /// Turns the engine's effects into outbound jobs (and log lines).
    fn effects(
        &self,
        contact: &ContactKey,
        effects: Vec<Effect>,
        dest: Destination<'_>,
        (jobs, consent): Outputs<'_>,
        now: u64,
    ) {
        let Destination {
            to,
            phone_number_id,
            window_at,
            cause,
        } = dest;
        for effect in effects {
            match effect {
                Effect::Send { message } => {
                    // A marketing template needs marketing consent when
                    // its turn comes, even inside a conversation.
                    let purpose = matches!(
                        message,
                        Outgoing::Template {
                            marketing: true,
                            ..
                        }
                    )
                    .then(|| MARKETING.to_owned());
                    jobs.push(Job {
                        id: uuid::Uuid::new_v4().to_string(),
                        phone_number_id: phone_number_id.to_owned(),
                        to: to.clone(),
                        message: OutMessage::Flow { message },
                        created_at: now,
                        origin: Origin::Reply,
                        window_at,
                        purpose,
                    })
                }
                Effect::BudgetExceeded { flow, step } => {
                    tracing::error!(contact = %contact, flow, step, "flow step budget exceeded");
                }
                Effect::Action { action, purpose } if action == "opt_in" || action == "opt_out" => {
                    let granted = action == "opt_in";
                    tracing::info!(contact = %contact, action, "consent recorded");
                    consent.push(ConsentChange {
                        purpose: purpose.unwrap_or_else(|| MARKETING.to_owned()),
                        granted,
                        at: cause.as_ref().map_or(now, |(at, _)| *at),
                        source: "flow".to_owned(),
                        policy_version: self.policy_version.clone(),
                        evidence: cause.as_ref().map(|(_, e)| e.clone()),
                    });
                }
                Effect::Action { action, .. } if action == "export" => {
                    tracing::info!(contact = %contact, "export requested (flow)");
                    jobs.push(Job {
                        id: uuid::Uuid::new_v4().to_string(),
                        phone_number_id: phone_number_id.to_owned(),
                        to: to.clone(),
                        message: OutMessage::Export,
                        created_at: now,
                        origin: Origin::Reply,
                        window_at,
                        purpose: None,
                    });
                }
                Effect::Action { action, .. } if action == "erase" => {
                    // The flow asked and the customer confirmed.
                    tracing::info!(contact = %contact, "erasure confirmed (flow)");
                    let done = self.privacy_texts.erase_done.clone();
                    for message in [text(done), OutMessage::Erase] {
                        jobs.push(Job {
                            id: uuid::Uuid::new_v4().to_string(),
                            phone_number_id: phone_number_id.to_owned(),
                            to: to.clone(),
                            message,
                            created_at: now,
                            origin: Origin::Reply,
                            window_at,
                            purpose: None,
                        });
                    }
                }
                Effect::Action { action, .. } if action == "update_name" => {
                    tracing::info!(contact = %contact, "name set by the customer");
                }
                Effect::Action { action, .. } => {
                    tracing::info!(contact = %contact, action, "flow action (handled by later stages)");
                }
                Effect::SetName { .. } | Effect::AddTag { .. } | Effect::RemoveTag { .. } => {}
            }
        }
    }

    /// Answers a grant refused as beyond the day's grants (see
    /// [`crate::domain::consent::GRANTS_PER_DAY`]): the customer stays
    /// unsubscribed and may ask again tomorrow.
    fn grant_refused(
        &self,
        contact: &ContactKey,
        state: &Conversation,
        jobs: &mut Vec<Job>,
        now: u64,
    ) {
        let (Some(to), Some(number)) = (state.recipient.clone(), state.phone_number_id.clone())
        else {
            return;
        };
        tracing::info!(contact = %contact, "consent given again too often today; not recorded");
        let body = self.privacy_texts.grant_refused.clone();
        jobs.push(self.reply(state, &to, &number, text(body), now));
    }

    /// Answers a privacy command. STOP and START are confirmed once: a
    /// command that changes nothing gets no second confirmation within
    /// 24 hours (STOP after START changes something, and is confirmed).
    fn privacy_command(
        &self,
        contact: &ContactKey,
        command: Command,
        (state, profile): (&mut Conversation, &mut Profile),
        jobs: &mut Vec<Job>,
        now: u64,
    ) {
        let (Some(to), Some(number)) = (state.recipient.clone(), state.phone_number_id.clone())
        else {
            return;
        };
        let before = profile.marketing.unwrap_or(false);
        // A flow file may reword the answers.
        let flows = self.flows.current();
        let worded = &flows.privacy_texts;
        let builtin = &self.privacy_texts;
        let pick =
            |own: &Option<String>, default: &String| own.clone().unwrap_or_else(|| default.clone());
        let body = match command {
            Command::Help => pick(&worded.help, &builtin.help),
            Command::Erase => {
                tracing::info!(contact = %contact, "erasure requested");
                profile.erase_asked_at = Some(now);
                let ask = OutMessage::Flow {
                    message: Outgoing::Buttons {
                        body: builtin.erase_ask.clone(),
                        header: None,
                        footer: None,
                        buttons: vec![
                            (ERASE_YES.to_owned(), ERASE_YES_TITLE.to_owned()),
                            (ERASE_NO.to_owned(), ERASE_NO_TITLE.to_owned()),
                        ],
                    },
                };
                jobs.push(self.reply(state, &to, &number, ask, now));
                return;
            }
            Command::Export => {
                if !crate::privacy::requests::export_allowed(profile.export_asked_at, now) {
                    tracing::info!(contact = %contact, "export asked again within a day; not made again");
                    let again = builtin.export_again.clone();
                    jobs.push(self.reply(state, &to, &number, text(again), now));
                    return;
                }
                tracing::info!(contact = %contact, "export requested");
                profile.export_asked_at = Some(now);
                let ack = pick(&worded.export, &builtin.export);
                jobs.push(self.reply(state, &to, &number, text(ack), now));
                jobs.push(self.reply(state, &to, &number, OutMessage::Export, now));
                return;
            }
            Command::OptOut | Command::OptIn => {
                let granted = command == Command::OptIn;
                profile.marketing = Some(granted);
                let confirmed = if granted {
                    &mut profile.opt_in_confirmed_at
                } else {
                    &mut profile.opt_out_confirmed_at
                };
                let recently = confirmed.is_some_and(|t| now < t + WINDOW_SECS);
                if before == granted && recently {
                    tracing::info!(contact = %contact, ?command, "privacy command changes nothing; confirmed already");
                    return;
                }
                *confirmed = Some(now);
                if granted {
                    pick(&worded.opt_in, &builtin.opt_in)
                } else {
                    pick(&worded.opt_out, &builtin.opt_out)
                }
            }
        };
        tracing::info!(contact = %contact, ?command, "privacy command answered");
        jobs.push(self.reply(state, &to, &number, text(body), now));
    }

    /// A reply to the contact's last message.
    fn reply(
        &self,
        state: &Conversation,
        to: &Recipient,
        number: &str,
        message: OutMessage,
        now: u64,
    ) -> Job {
        Job {
            id: uuid::Uuid::new_v4().to_string(),
            phone_number_id: number.to_owned(),
            to: to.clone(),
            message,
            created_at: now,
            origin: Origin::Reply,
            window_at: state.last_inbound,
            purpose: None,
        }
    }

    /// A contact who writes in after `privacy.policy_version` changed gets
    /// one short notice, and the version shown goes into their ledger. A
    /// new contact starts under the policy in force, with no notice.
    fn policy_notice(
        &self,
        profile: &mut Profile,
        (jobs, consent): Outputs<'_>,
        to: &Recipient,
        m: &InboundMessage,
        (sent_at, evidence): (u64, &str),
        now: u64,
    ) {
        let current = &self.policy_version;
        match &profile.policy_version {
            None => profile.policy_version = Some(current.clone()),
            Some(seen) if seen != current => {
                profile.policy_version = Some(current.clone());
                jobs.push(Job {
                    id: uuid::Uuid::new_v4().to_string(),
                    phone_number_id: m.origin.phone_number_id.clone(),
                    to: to.clone(),
                    message: OutMessage::Flow {
                        message: Outgoing::Text {
                            body: self.privacy_texts.policy_notice.clone(),
                            preview_url: false,
                        },
                    },
                    created_at: now,
                    origin: Origin::Reply,
                    window_at: Some(sent_at),
                    purpose: None,
                });
                consent.push(ConsentChange {
                    purpose: crate::domain::consent::POLICY_NOTICE.to_owned(),
                    granted: true,
                    at: sent_at,
                    source: "notice".to_owned(),
                    policy_version: current.clone(),
                    evidence: Some(evidence.to_owned()),
                });
            }
            Some(_) => {}
        }
    }

    /// The consent an entry gave or withdrew at ingress (STOP, START,
    /// WhatsApp's own Stop/Resume), on record since then: the receivers
    /// hear of it with the step. Read again from the event; should the
    /// keywords have changed since, the decision taken at ingress stands.
    fn recorded_at_ingress(&self, event: &Event, entry: &str, now: u64) -> Option<ConsentChange> {
        let granted = match event {
            // A refused grant is not on record: nothing to share.
            Event::Message(m) if m.grant_refused => return None,
            Event::Preference(p) if p.grant_refused => return None,
            Event::Message(m) => m.consent?,
            Event::Preference(_) => true,
            _ => return None,
        };
        let read = crate::privacy::consent::of_event(
            event,
            entry,
            &self.pseudonymizer,
            &self.policy_version,
            &self.flows.current().privacy,
        );
        match (read, event) {
            (Some(mut change), Event::Message(_)) => {
                change.granted = granted;
                Some(change)
            }
            (Some(change), _) => Some(change),
            (None, Event::Message(_)) => Some(ConsentChange {
                purpose: MARKETING.to_owned(),
                granted,
                at: now,
                source: "keyword".to_owned(),
                policy_version: self.policy_version.clone(),
                evidence: None,
            }),
            (None, _) => None,
        }
    }

    /// Queues the integration events of a step for the CRM and helpdesk
    /// receivers (see [`crate::integrations`]), before the step is
    /// committed, in the order of the entries that caused them. Each
    /// event's id names the entry (or the timeout) that caused it, so a
    /// step redone after a crash, even with more entries, queues the same
    /// events under the same ids, which the store keeps once.
    async fn share(
        &self,
        step: Step<'_>,
        sealer: &Sealer,
        profile: &mut Profile,
    ) -> Result<(), StoreError> {
        use crate::integrations::{Event as Shared, EventKind, Field};
        use serde_json::{Value, json};
        let contact = &step.claim.contact;
        let phone = match &profile.recipient {
            Some(Recipient::WaId(w)) => json!(w),
            _ => Value::Null,
        };
        let name = profile
            .contact
            .name
            .clone()
            .map_or(Value::Null, Value::String);
        let tags = json!(profile.contact.tags);
        let none = std::collections::BTreeSet::new();
        let mut events: Vec<(Shared, bool)> = Vec::new();
        for cause in step.causes {
            let about = |kind: EventKind, n: usize| {
                Shared::new(
                    format!("{contact}.{}.{}.{n}", cause.key, kind.name()),
                    kind,
                    contact.clone(),
                    step.now,
                )
                .with(Field::PhoneNumber, phone.clone())
                .with(Field::Name, name.clone())
                .with(Field::Tags, tags.clone())
            };
            if cause.created {
                events.push((about(EventKind::ContactCreated, 0), false));
            }
            for (n, c) in cause.consent.iter().enumerate() {
                let consent = json!({
                    "purpose": c.purpose,
                    "granted": c.granted,
                    "at": c.at,
                    "source": c.source,
                    "policy_version": c.policy_version,
                });
                events.push((
                    about(EventKind::ConsentChanged, n).with(Field::Consent, consent),
                    false,
                ));
            }
            if let Some(text) = &cause.forwarded {
                let mut e = about(EventKind::MessageReceived, 0);
                if let Some(t) = text {
                    e = e.with(Field::Text, json!(t));
                }
                events.push((e, false));
            }
            for (n, (flow, vars)) in cause.completed.iter().enumerate() {
                events.push((
                    about(EventKind::FlowCompleted, n)
                        .with(Field::Flow, json!(flow))
                        .with(Field::Variables, json!(vars)),
                    false,
                ));
            }
            if cause.handoff {
                let conversation = self.recent(contact, sealer, &step).await?;
                events.push((
                    about(EventKind::HandoffRequested, 0)
                        .with(Field::Conversation, json!(conversation)),
                    false,
                ));
            }
            if cause.export {
                events.push((about(EventKind::ExportRequested, 0), false));
            }
            if cause.renamed {
                events.push((
                    about(EventKind::ContactRectified, 0).with(Field::Changed, json!(["name"])),
                    true,
                ));
            }
            if cause.erased {
                events.push((about(EventKind::ContactErased, 0), true));
            }
        }
        for (event, to_everyone_who_got_data) in events {
            let also = if to_everyone_who_got_data {
                &profile.shared_with
            } else {
                &none
            };
            let queued = self
                .hooks
                .emit(
                    self.store.as_ref(),
                    &self.keyring,
                    &self.pseudonymizer,
                    &event,
                    also,
                )
                .await?;
            profile.shared_with.extend(queued);
        }
        for r in self.hooks.receivers() {
            if profile.shared_with.contains(&r.name)
                && let Some(q) =
                    crate::integrations::Hooks::queue_of(&self.pseudonymizer, &r.name, contact)
            {
                self.wake.outbox.push(q);
            }
        }
        Ok(())
    }

    /// The last [`RECENT`] messages both ways, this step's included (for
    /// `handoff.requested`).
    async fn recent(
        &self,
        contact: &ContactKey,
        sealer: &Sealer,
        step: &Step<'_>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let stored = self.store.recent_history(contact, RECENT).await?;
        let mut recent: Vec<crate::privacy::export::HistoryItem> = stored
            .iter()
            .filter_map(|(_, sealed)| {
                let plain = sealer
                    .open(sealed, &crate::privacy::export::history_context(contact))
                    .ok()?;
                serde_json::from_slice(&plain).ok()
            })
            .collect();
        recent.extend(step.history.iter().cloned());
        recent.extend(
            step.jobs
                .iter()
                .filter_map(crate::privacy::export::outbound),
        );
        let skip = recent.len().saturating_sub(RECENT);
        Ok(recent
            .iter()
            .skip(skip)
            .map(|h| serde_json::json!({"at": h.at, "direction": h.direction, "kind": h.kind, "text": h.text}))
            .collect())
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
