//! The privacy stage of a message: STOP, START, HELP, MY DATA and DELETE
//! MY DATA answered before any flow, and the consent an entry recorded at
//! ingress.

use super::effects::text;
use super::*;

/// The ids of the buttons that confirm or decline an erasure.
pub const ERASE_YES: &str = "whatsify_erase_yes";
pub const ERASE_NO: &str = "whatsify_erase_no";
pub(super) const ERASE_YES_TITLE: &str = "Yes, delete it";
pub(super) const ERASE_NO_TITLE: &str = "No, keep it";

impl Worker {
    /// Answers a grant refused as beyond the day's grants (see
    /// [`crate::domain::consent::GRANTS_PER_DAY`]): the customer stays
    /// unsubscribed and may ask again tomorrow.
    pub(super) fn grant_refused(
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
        let body = self
            .policies
            .for_number(&number)
            .texts
            .grant_refused
            .clone();
        jobs.push(self.reply(state, &to, &number, text(body), now));
    }

    /// Answers a privacy command. STOP and START are confirmed once: a
    /// command that changes nothing gets no second confirmation within
    /// 24 hours (STOP after START changes something, and is confirmed).
    pub(super) fn privacy_command(
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
        let flows = self.flows.for_number(&number);
        let worded = &flows.privacy_texts;
        let builtin = &self.policies.for_number(&number).texts;
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

    /// The consent an entry gave or withdrew at ingress (STOP, START,
    /// WhatsApp's own Stop/Resume), on record since then: the receivers
    /// hear of it with the step. Read again from the event; should the
    /// keywords have changed since, the decision taken at ingress stands.
    pub(super) fn recorded_at_ingress(
        &self,
        event: &InboxEvent,
        entry: &str,
        now: u64,
    ) -> Option<ConsentChange> {
        let granted = match event {
            // A refused grant is not on record: nothing to share.
            InboxEvent::Message(m) if m.grant_refused => return None,
            InboxEvent::Preference(p) if p.grant_refused => return None,
            InboxEvent::Message(m) => m.consent?,
            InboxEvent::Preference(_) => true,
            _ => return None,
        };
        let policy = self
            .policies
            .for_number(event.phone_number_id().unwrap_or_default());
        let read = crate::privacy::consent::of_event(
            event,
            entry,
            &self.pseudonymizer,
            (&policy.version, Some(&policy.business)),
            &self
                .flows
                .for_number(event.phone_number_id().unwrap_or_default())
                .privacy,
        );
        match (read, event) {
            (Some(mut change), InboxEvent::Message(_)) => {
                change.granted = granted;
                Some(change)
            }
            (Some(change), _) => Some(change),
            (None, InboxEvent::Message(_)) => Some(ConsentChange {
                purpose: MARKETING.to_owned(),
                granted,
                at: now,
                source: "keyword".to_owned(),
                policy_version: policy.version.clone(),
                evidence: None,
                business: policy.business.tag(),
            }),
            (None, _) => None,
        }
    }
}
