//! One customer message: what it tells about the contact, the read
//! receipt, the notice of a policy change, the answer to an erasure
//! question, then the privacy commands or the flows (whose first reply to
//! a new contact follows the first-contact notice).

use super::effects::{Destination, Outputs, text};
use super::privacy::{ERASE_NO_TITLE, ERASE_YES_TITLE};
use super::*;
use crate::domain::payload::{Contact, Message};
use crate::flow::Action;

/// The message being handled: where it came in, what it says, and when
/// it was sent (Unix s).
struct Inbound<'a> {
    m: &'a InboundMessage,
    message: &'a Message,
    to: &'a Recipient,
    sent_at: u64,
}

impl Worker {
    /// Runs one message through the flows; returns its time (Unix s),
    /// which opens the 24-hour window.
    pub(super) fn handle_message(
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
        let Some(to) = note_sender((state, profile), m, &message, meta_profile, sent_at) else {
            return Some(sent_at);
        };
        let msg = Inbound {
            m,
            message: &message,
            to: &to,
            sent_at,
        };
        if self.mark_read {
            mark_read(jobs, &msg, now);
        }
        self.answer(contact, &msg, (state, profile), (jobs, consent), now);
        Some(sent_at)
    }

    /// Answers a message from a known sender: an erasure question's
    /// answer, a privacy command, or else the flows (unless a person has
    /// the conversation).
    fn answer(
        &self,
        contact: &ContactKey,
        msg: &Inbound<'_>,
        (state, profile): (&mut Conversation, &mut Profile),
        (jobs, consent): Outputs<'_>,
        now: u64,
    ) {
        let input = input_of(msg.message);
        let flows = self.flows.for_number(&msg.m.origin.phone_number_id);
        let command = command_of(msg.m, &input, &flows);
        let evidence = self.pseudonymizer.tag("wamid", &msg.message.id);
        self.note_withdrawal(profile, consent, msg, &evidence);
        let (m, to, sent_at) = (msg.m, msg.to, msg.sent_at);
        self.policy_change_notice(profile, (jobs, consent), to, m, (sent_at, &evidence), now);
        if self.erase_answer(contact, (state, profile), jobs, msg, &input, now) {
            return;
        }
        if let Some(command) = command {
            // Before any flow, whatever the session: the consent change is
            // on record since ingress; here the customer gets the answer.
            if command == Command::OptIn && m.grant_refused {
                self.grant_refused(contact, state, jobs, now);
            } else {
                self.privacy_command(contact, command, (state, profile), jobs, now);
            }
            return;
        }
        if profile.handed_off_at.is_some() {
            // A person has the conversation: the flows stay quiet (the
            // message is in the history for the agent).
            tracing::info!(contact = %contact, "handed off: not answered by the flows");
            return;
        }
        let (effects, handed_off) = self.run_flows(&flows, (state, profile), &input, now, now);
        if handed_off {
            tracing::info!(contact = %contact, "conversation handed off to a person");
        }
        // A name the customer gives (a flow's `set` of contact.name, or its
        // `update_name` action) wins over the WhatsApp name from now on.
        if effects.iter().any(|e| match e {
            Effect::SetName { .. } => true,
            Effect::Action { action, .. } => *action == Action::UpdateName,
            _ => false,
        }) {
            profile.name_chosen = true;
        }
        let dest = Destination {
            to,
            phone_number_id: &m.origin.phone_number_id,
            window_at: state.last_inbound,
            cause: Some((sent_at, evidence.clone())),
        };
        let before = consent.len();
        let jobs_before = jobs.len();
        self.effects(contact, effects, dest, (jobs, consent), now);
        self.bound_exports(profile, &mut jobs[jobs_before..], now);
        // The flows' first reply to a new contact comes after the
        // business's privacy notice. (A privacy command's answer, above,
        // goes alone: the notice waits for the flows' first reply.)
        let cause = (sent_at, Some(evidence));
        self.first_contact_notice(profile, (jobs, consent), jobs_before, cause);
        if let Some(granted) = consent[before..]
            .iter()
            .rev()
            .find(|c| c.purpose == MARKETING)
            .map(|c| c.granted)
        {
            profile.marketing = Some(granted);
        }
    }

    /// A STOP is remembered with its second; a START in that same second
    /// puts the STOP on record (again, if it was): in doubt, no marketing.
    fn note_withdrawal(
        &self,
        profile: &mut Profile,
        consent: &mut Vec<ConsentChange>,
        msg: &Inbound<'_>,
        evidence: &str,
    ) {
        match (msg.m.consent, &profile.withdrew) {
            (Some(false), _) => profile.withdrew = Some((msg.sent_at, evidence.to_owned())),
            (Some(true), Some((at, stop))) if *at == msg.sent_at => {
                // The ledger keeps it once.
                let policy = self.policies.for_number(&msg.m.origin.phone_number_id);
                consent.push(ConsentChange {
                    purpose: MARKETING.to_owned(),
                    granted: false,
                    at: msg.sent_at,
                    source: "keyword".to_owned(),
                    policy_version: policy.version.clone(),
                    business: policy.business.tag(),
                    evidence: Some(stop.clone()),
                });
            }
            _ => {}
        }
    }

    /// The answer to "Delete everything?", while it is valid; any other
    /// message lets the request lapse and goes on as usual. Answers
    /// whether the message was that answer.
    fn erase_answer(
        &self,
        contact: &ContactKey,
        (state, profile): (&mut Conversation, &mut Profile),
        jobs: &mut Vec<Job>,
        msg: &Inbound<'_>,
        input: &Input,
        now: u64,
    ) -> bool {
        let Some(asked) = profile.erase_asked_at.take() else {
            return false;
        };
        let yes = normalize(ERASE_YES_TITLE);
        let no = normalize(ERASE_NO_TITLE);
        let answer = match input {
            Input::Choice { id, .. } if id == ERASE_YES => Some(true),
            Input::Choice { id, .. } if id == ERASE_NO => Some(false),
            Input::Text(t) if normalize(t) == yes => Some(true),
            Input::Text(t) if normalize(t) == no => Some(false),
            _ => None,
        };
        if now >= asked + self.erase_confirm.as_secs() {
            return false;
        }
        let number = &msg.m.origin.phone_number_id;
        let texts = &self.policies.for_number(number).texts;
        match answer {
            Some(true) => {
                tracing::info!(contact = %contact, "erasure confirmed");
                let done = text(texts.erase_done.clone());
                jobs.push(self.reply(state, msg.to, number, done, now));
                jobs.push(self.reply(state, msg.to, number, OutMessage::Erase, now));
                true
            }
            Some(false) => {
                let kept = text(texts.erase_kept.clone());
                jobs.push(self.reply(state, msg.to, number, kept, now));
                true
            }
            None => false,
        }
    }
}

/// What the message tells about its sender: their names and ids, kept in
/// the profile, and where replies go. `None`: no id to reply to.
fn note_sender(
    (state, profile): (&mut Conversation, &mut Profile),
    m: &InboundMessage,
    message: &Message,
    meta_profile: Contact,
    sent_at: u64,
) -> Option<Recipient> {
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
        (None, None) => return None,
    };
    if state.phone_number_id.as_deref() != Some(m.origin.phone_number_id.as_str()) {
        state.last_inbound = None;
    }
    state.recipient = Some(to.clone());
    profile.recipient = Some(to.clone());
    state.phone_number_id = Some(m.origin.phone_number_id.clone());
    state.last_inbound = Some(state.last_inbound.unwrap_or(0).max(sent_at));
    Some(to)
}

/// Queues a read receipt. Marking a message read marks the earlier ones
/// too: one receipt per batch and number is enough.
fn mark_read(jobs: &mut Vec<Job>, msg: &Inbound<'_>, now: u64) {
    let number = &msg.m.origin.phone_number_id;
    jobs.retain(|j| {
        !(matches!(j.message, OutMessage::MarkRead { .. }) && &j.phone_number_id == number)
    });
    jobs.push(Job {
        id: uuid::Uuid::new_v4().to_string(),
        phone_number_id: number.clone(),
        to: msg.to.clone(),
        message: OutMessage::MarkRead {
            message_id: msg.message.id.clone(),
        },
        created_at: now,
        origin: Origin::Reply,
        window_at: Some(msg.sent_at),
        purpose: None,
    });
}

/// The privacy command a message carries, other than STOP and START:
/// those were decided at ingress, where the consent was recorded, and the
/// answer follows that decision, not a second reading (the flows may have
/// been reloaded since).
fn command_of(m: &InboundMessage, input: &Input, flows: &crate::flow::Flows) -> Option<Command> {
    match m.consent {
        Some(false) => Some(Command::OptOut),
        Some(true) => Some(Command::OptIn),
        None => match input {
            Input::Text(t) => keywords::classify(t, &flows.privacy),
            Input::Choice { id, title } => keywords::classify_choice(id, title, &flows.privacy),
            _ => None,
        }
        .filter(|c| !matches!(c, Command::OptOut | Command::OptIn)),
    }
}
