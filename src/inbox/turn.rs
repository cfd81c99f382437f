//! One claim worked: the timeout that came due, then each inbox entry in
//! order (message, status, preference, agent action), gathered in a
//! [`Turn`] until the step is committed.

use super::effects::Destination;
use super::share::{Before, Cause};
use super::*;
use crate::privacy::export::HistoryItem;
use crate::store::StoredEntry;

/// What working one claim gathers until it is committed.
pub(super) struct Turn {
    pub(super) contact: ContactKey,
    pub(super) state: Conversation,
    pub(super) profile: Profile,
    /// The profile as opened: written back only if it changed.
    pub(super) profile_before: Profile,
    /// A profile that is there but cannot be read is not overwritten.
    pub(super) unreadable: bool,
    pub(super) jobs: Vec<Job>,
    pub(super) acked: Vec<String>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) consent: Vec<ConsentChange>,
    /// The number and time of the customer's latest message.
    pub(super) window: Option<(String, u64)>,
    pub(super) history: Vec<HistoryItem>,
    pub(super) messages_in: u64,
    /// Whether there are receivers to tell what each entry did.
    pub(super) sharing: bool,
    /// What each entry did, for the CRM and helpdesk receivers.
    pub(super) causes: Vec<Cause>,
    pub(super) first_message: bool,
    /// An erasure the customer confirmed that waits for the end of a
    /// legal hold (see `held`).
    pub(super) held_erasure: bool,
    pub(super) now: u64,
}

/// What a status webhook says about one of our messages.
pub(super) fn delivery_of(
    update: &StatusUpdate,
    pseudonymizer: &Pseudonymizer,
) -> Option<Delivery> {
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

impl Worker {
    /// Handles a claim's entries; with `tick`, first fires a due timeout.
    pub(super) async fn work(
        &self,
        mut claim: Claim,
        tick: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let sealer = self.sealer_for(&mut claim).await?;
        let mut turn = self.open_turn(&claim, &sealer);
        if let Some(at) = tick {
            self.fire_timeout(&mut turn, at);
        }
        let queue = Queue::Contact(claim.contact.clone());
        for entry in &claim.entries {
            self.take_entry(&mut turn, &sealer, &queue, entry);
        }
        self.hold_erasure(&mut turn).await?;
        self.settle(&mut turn, &claim, &sealer).await?;
        // The agents' inbox follows the handoff once the step is in.
        let (handoff, now) = (self.handoff_of(&turn), turn.now);
        let outcome = self.finish(turn, &claim, &sealer).await?;
        if let (Some(handoff), Outcome::Worked { contact, .. }) = (handoff, &outcome) {
            self.note_handoff(contact, handoff, now).await;
        }
        Ok(outcome)
    }

    /// The conversation and profile as the claim holds them, opened.
    fn open_turn(&self, claim: &Claim, sealer: &Sealer) -> Turn {
        let contact = claim.contact.clone();
        let state = self.open_state(claim, Some(sealer));
        let opened: Option<Profile> = claim
            .profile
            .as_ref()
            .and_then(|sealed| sealer.open(sealed, &profile_context(&contact)).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        let unreadable = claim.profile.is_some() && opened.is_none();
        if unreadable {
            tracing::error!(contact = %contact, "profile cannot be opened; left as it is");
        }
        let profile = opened.unwrap_or_default();
        Turn {
            contact,
            state,
            profile_before: profile.clone(),
            profile,
            unreadable,
            jobs: Vec::new(),
            acked: Vec::new(),
            deliveries: Vec::new(),
            consent: Vec::new(),
            window: None,
            history: Vec::new(),
            messages_in: 0,
            sharing: !self.hooks.receivers().is_empty(),
            causes: Vec::new(),
            first_message: claim.profile.is_none(),
            held_erasure: false,
            now: self.clock.now(),
        }
    }

    /// Fires the session's timeout that came due at `at`.
    fn fire_timeout(&self, turn: &mut Turn, at: u64) {
        let Some(to) = turn.state.recipient.clone() else {
            return;
        };
        let before = Before::of(&turn.consent, &turn.jobs, &turn.state, &turn.profile);
        let number = turn.state.phone_number_id.as_deref().unwrap_or_default();
        let flows = self.flows.for_number(number);
        let turned = (&mut turn.state, &mut turn.profile);
        let (effects, _) = self.run_flows(&flows, turned, &Input::Tick, at, turn.now);
        let number = turn.state.phone_number_id.clone().unwrap_or_default();
        let dest = Destination {
            to: &to,
            phone_number_id: &number,
            window_at: turn.state.last_inbound,
            cause: None,
        };
        let jobs_before = turn.jobs.len();
        let out = (&mut turn.jobs, &mut turn.consent);
        self.effects(&turn.contact, effects, dest, out, turn.now);
        if let Some(granted) = turn.consent.last().map(|c| c.granted) {
            turn.profile.marketing = Some(granted);
        }
        if !turn.unreadable {
            // The flows' first message to a new contact, on a timeout.
            let out = (&mut turn.jobs, &mut turn.consent);
            self.first_contact_notice(&mut turn.profile, out, jobs_before, (at, None));
        }
        if turn.sharing {
            turn.causes.push(before.cause(
                format!("tick{at}"),
                (&turn.consent, &turn.jobs),
                (&turn.state, &turn.profile),
                Vec::new(),
            ));
        }
    }

    /// Handles one inbox entry (acknowledged even when it cannot be read).
    fn take_entry(&self, turn: &mut Turn, sealer: &Sealer, queue: &Queue, entry: &StoredEntry) {
        turn.acked.push(entry.id.clone());
        let event: Option<InboxEvent> = sealer
            .open(&entry.sealed, queue.name().as_bytes())
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        let Some(event) = event else {
            tracing::error!(contact = %turn.contact, entry = %entry.id, "inbox entry cannot be opened; skipped");
            return;
        };
        let before = Before::of(&turn.consent, &turn.jobs, &turn.state, &turn.profile);
        let mut ingress = Vec::new();
        if turn.sharing {
            ingress.extend(self.recorded_at_ingress(&event, &entry.id, turn.now));
        }
        let is_message = matches!(event, InboxEvent::Message(_));
        let forwarded = self.on_event(turn, event);
        if turn.sharing {
            let mut cause = before.cause(
                entry.id.clone(),
                (&turn.consent, &turn.jobs),
                (&turn.state, &turn.profile),
                ingress,
            );
            cause.forwarded = forwarded;
            if is_message && turn.first_message {
                cause.created = true;
                turn.first_message = false;
            }
            turn.causes.push(cause);
        }
    }

    /// Handles one event; answers what a handed-off customer's message
    /// forwards to the helpdesk (its text, if any).
    fn on_event(&self, turn: &mut Turn, event: InboxEvent) -> Option<Option<String>> {
        match event {
            InboxEvent::Message(m) => return self.on_message(turn, &m),
            InboxEvent::Status(s) => self.on_status(turn, &s),
            InboxEvent::Preference(p) => self.on_preference(turn, &p),
            InboxEvent::Agent(a) => self.on_agent(turn, a.action),
            InboxEvent::System(_) => {}
        }
        None
    }

    fn on_message(&self, turn: &mut Turn, m: &InboundMessage) -> Option<Option<String>> {
        turn.messages_in += 1;
        let handed_off = turn.profile.handed_off_at.is_some();
        if let Ok(message) = m.message.parse() {
            // What the customer sent is theirs: kept (sealed) for their
            // copy, until the retention period ends.
            turn.history.push(crate::privacy::export::inbound(
                message.timestamp.0.max(0) as u64,
                message.kind.type_name(),
                &input_of(&message),
            ));
        }
        // A person has the conversation: the message goes to the helpdesk
        // (`message.received`).
        let forwarded = handed_off.then(|| {
            m.message.parse().ok().and_then(|msg| match input_of(&msg) {
                Input::Text(t) => Some(t),
                Input::Choice { title, .. } => Some(title),
                _ => None,
            })
        });
        if turn.unreadable && turn.profile.policy_version.is_none() {
            // Whether they were shown the notices is not known (and the
            // profile will not be written back): none is sent.
            let policy = self.policies.for_number(&m.origin.phone_number_id);
            turn.profile.policy_version = Some(policy.version.clone());
        }
        let out = (&mut turn.jobs, &mut turn.consent);
        let turned = (&mut turn.state, &mut turn.profile);
        if let Some(at) = self.handle_message(&turn.contact, m, turned, out, turn.now)
            && turn.window.as_ref().is_none_or(|(_, w)| at > *w)
        {
            turn.window = Some((m.origin.phone_number_id.clone(), at));
        }
        forwarded
    }

    fn on_status(&self, turn: &mut Turn, s: &StatusUpdate) {
        let Some(d) = delivery_of(s, &self.pseudonymizer) else {
            return;
        };
        if d.code == Some(crate::outbox::graph::MARKETING_STOPPED_CODE) {
            tracing::info!(contact = %turn.contact, "customer stopped marketing messages (131050)");
            let policy = self.policies.for_number(&s.origin.phone_number_id);
            turn.consent.push(ConsentChange {
                purpose: MARKETING.to_owned(),
                granted: false,
                at: d.at,
                source: "meta:131050".to_owned(),
                policy_version: policy.version.clone(),
                business: policy.business.tag(),
                evidence: d.wamid.clone(),
            });
            turn.profile.marketing = Some(false);
        }
        turn.deliveries.push(d);
    }

    /// WhatsApp's own Stop/Resume for marketing messages: on record since
    /// ingress; confirmed like STOP and START.
    fn on_preference(&self, turn: &mut Turn, p: &crate::domain::inbound::PreferenceChange) {
        let Ok(pref) = p.preference.parse() else {
            return;
        };
        if pref.category != "marketing_messages"
            || !matches!(pref.value.as_str(), "stop" | "resume")
        {
            return;
        }
        let command = if pref.value == "stop" {
            Command::OptOut
        } else {
            Command::OptIn
        };
        if p.grant_refused && command == Command::OptIn {
            self.grant_refused(&turn.contact, &turn.state, &mut turn.jobs, turn.now);
        } else {
            let turned = (&mut turn.state, &mut turn.profile);
            self.privacy_command(&turn.contact, command, turned, &mut turn.jobs, turn.now);
        }
    }

    fn on_agent(&self, turn: &mut Turn, action: AgentAction) {
        match action {
            AgentAction::Message { message } => {
                let (Some(to), Some(number)) = (
                    turn.state.recipient.clone(),
                    turn.state.phone_number_id.clone(),
                ) else {
                    tracing::warn!(contact = %turn.contact, "agent message for a contact with no conversation; dropped");
                    return;
                };
                let origin = if message.needs_window() {
                    Origin::Reply
                } else {
                    Origin::Business
                };
                let mut job = self.reply(&turn.state, &to, &number, message, turn.now);
                job.origin = origin;
                let from = turn.jobs.len();
                turn.jobs.push(job);
                if !turn.unreadable {
                    // An operator's first message to a contact the flows
                    // never answered.
                    let out = (&mut turn.jobs, &mut turn.consent);
                    let cause = (turn.now, None);
                    self.first_contact_notice(&mut turn.profile, out, from, cause);
                }
            }
            AgentAction::Close => {
                tracing::info!(contact = %turn.contact, "handoff closed; flows answer again");
                turn.profile.handed_off_at = None;
                turn.state.session = None;
            }
            AgentAction::Rectify { name, tags } => {
                tracing::info!(contact = %turn.contact, "profile rectified at the privacy desk");
                if let Some(name) = name {
                    // The name the customer gave wins, as a flow's name step's does.
                    turn.profile.contact.name = Some(name);
                    turn.profile.name_chosen = true;
                }
                if let Some(tags) = tags {
                    turn.profile.contact.tags = tags;
                }
            }
        }
    }
}
