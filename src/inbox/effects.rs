//! From the flow engine's effects to outbound jobs: replies, consent a
//! flow records, exports and erasures it asks for.

use super::*;
use crate::flow::Action;

/// Whether the engine's effects hand the conversation to a person.
pub(super) fn hands_off(effects: &[Effect]) -> bool {
    effects.iter().any(|e| {
        matches!(
            e,
            Effect::Action {
                action: Action::Handoff,
                ..
            }
        )
    })
}

/// The statistics' names of the steps an engine run visited.
pub(super) fn steps_run(flows: &crate::flow::Flows, visited: &[(usize, usize)]) -> Vec<String> {
    visited
        .iter()
        .filter_map(|(f, s)| {
            let flow = flows.flows.get(*f)?;
            Some(crate::store::stats::step(&flow.id, &flow.steps.get(*s)?.id))
        })
        .collect()
}

/// What handling an event adds to the commit: outbound jobs and consent
/// ledger entries.
pub(super) type Outputs<'a> = (&'a mut Vec<Job>, &'a mut Vec<ConsentChange>);

/// Where a conversation's replies go.
pub(super) struct Destination<'a> {
    pub(super) to: &'a Recipient,
    /// The business number the customer wrote to.
    pub(super) phone_number_id: &'a str,
    /// The customer's last message time: the window replies rely on.
    pub(super) window_at: Option<u64>,
    /// The message being answered: its time and a keyed hash of its id
    /// (the evidence of consent a flow step records).
    pub(super) cause: Option<(u64, String)>,
}

/// A plain text message.
pub(super) fn text(body: String) -> OutMessage {
    OutMessage::Flow {
        message: Outgoing::Text {
            body,
            preview_url: false,
        },
    }
}

impl Worker {
    /// Runs the flows on one input at `at`; the conversation and profile
    /// take the result. Answers the effects, and whether they hand the
    /// conversation to a person.
    pub(super) fn run_flows(
        &self,
        flows: &crate::flow::Flows,
        (state, profile): (&mut Conversation, &mut Profile),
        input: &Input,
        at: u64,
        now: u64,
    ) -> (Vec<Effect>, bool) {
        let out = engine::step(
            flows,
            state.session.take(),
            &profile.contact,
            input,
            at,
            self.session_ttl.as_secs(),
        );
        state.steps_run.extend(steps_run(flows, &out.visited));
        state.completed.extend(out.completed);
        state.session = out.session;
        profile.contact = out.contact;
        let handed_off = hands_off(&out.effects);
        if handed_off {
            profile.handed_off_at = Some(now);
        }
        (out.effects, handed_off)
    }

    /// A flow's `export` action makes a copy once a day, as MY DATA does:
    /// asked again sooner, the customer is told so instead.
    pub(super) fn bound_exports(&self, profile: &mut Profile, jobs: &mut [Job], now: u64) {
        for job in jobs.iter_mut() {
            if !matches!(job.message, OutMessage::Export) {
                continue;
            }
            if crate::privacy::requests::export_allowed(profile.export_asked_at, now) {
                profile.export_asked_at = Some(now);
            } else {
                let texts = &self.policies.for_number(&job.phone_number_id).texts;
                job.message = text(texts.export_again.clone());
            }
        }
    }

    /// Turns the engine's effects into outbound jobs (and log lines).
    pub(super) fn effects(
        &self,
        contact: &ContactKey,
        effects: Vec<Effect>,
        dest: Destination<'_>,
        (jobs, consent): Outputs<'_>,
        now: u64,
    ) {
        let job = |message: OutMessage, purpose: Option<String>| Job {
            id: uuid::Uuid::new_v4().to_string(),
            phone_number_id: dest.phone_number_id.to_owned(),
            to: dest.to.clone(),
            message,
            created_at: now,
            origin: Origin::Reply,
            window_at: dest.window_at,
            purpose,
        };
        let policy = self.policies.for_number(dest.phone_number_id);
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
                    jobs.push(job(OutMessage::Flow { message }, purpose));
                }
                Effect::BudgetExceeded { flow, step } => {
                    tracing::error!(contact = %contact, flow, step, "flow step budget exceeded");
                }
                Effect::Action {
                    action: action @ (Action::OptIn | Action::OptOut),
                    purpose,
                } => {
                    let granted = action == Action::OptIn;
                    let cause = dest.cause.as_ref();
                    tracing::info!(contact = %contact, action = action.name(), "consent recorded");
                    consent.push(ConsentChange {
                        purpose: purpose.unwrap_or_else(|| MARKETING.to_owned()),
                        granted,
                        at: cause.map_or(now, |(at, _)| *at),
                        source: "flow".to_owned(),
                        policy_version: policy.version.clone(),
                        evidence: cause.map(|(_, e)| e.clone()),
                        business: policy.business.tag(),
                    });
                }
                Effect::Action {
                    action: Action::Export,
                    ..
                } => {
                    tracing::info!(contact = %contact, "export requested (flow)");
                    jobs.push(job(OutMessage::Export, None));
                }
                Effect::Action {
                    action: Action::Erase,
                    ..
                } => {
                    // The flow asked and the customer confirmed.
                    tracing::info!(contact = %contact, "erasure confirmed (flow)");
                    let done = policy.texts.erase_done.clone();
                    jobs.push(job(text(done), None));
                    jobs.push(job(OutMessage::Erase, None));
                }
                Effect::Action {
                    action: Action::UpdateName,
                    ..
                } => {
                    tracing::info!(contact = %contact, "name set by the customer");
                }
                Effect::Action {
                    action: action @ Action::Handoff,
                    ..
                } => {
                    tracing::info!(contact = %contact, action = action.name(), "flow action (handled by later stages)");
                }
                Effect::SetName { .. } | Effect::AddTag { .. } | Effect::RemoveTag { .. } => {}
            }
        }
    }

    /// A reply to the contact's last message.
    pub(super) fn reply(
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
}
