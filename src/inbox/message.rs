//! One customer message: what it tells about the contact, the read
//! receipt, the policy notice, the answer to an erasure question, then the
//! privacy commands or the flows.

use super::effects::{Destination, Outputs, hands_off, steps_run, text};
use super::privacy::{ERASE_NO_TITLE, ERASE_YES_TITLE};
use super::*;

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

    /// A contact who writes in after `privacy.policy_version` changed gets
    /// one short notice, and the version shown goes into their ledger. A
    /// new contact starts under the policy in force, with no notice.
    pub(super) fn policy_notice(
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
                    purpose: crate::privacy::consent::POLICY_NOTICE.to_owned(),
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
}
