//! One claim worked: the timeout that came due, then each inbox entry in
//! order (message, status, preference, agent action).

use super::effects::{Destination, hands_off, steps_run};
use super::seal::outbox_context;
use super::share::{Before, Cause, Sharing};
use super::*;

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
            let event: Option<InboxEvent> = sealer
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
            let is_message = matches!(event, InboxEvent::Message(_));
            if sharing {
                ingress.extend(self.recorded_at_ingress(&event, &entry.id, now));
            }
            match event {
                InboxEvent::Message(m) => {
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
                InboxEvent::Status(s) => {
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
                InboxEvent::Preference(p) => {
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
                InboxEvent::Agent(a) => match a.action {
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
            let step = Sharing {
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
        let mut audited: Vec<crate::privacy::audit::Event> = consent
            .iter()
            .map(|c| crate::privacy::audit::of_consent(contact.as_str(), c))
            .collect();
        let erase_event = |kind: &str| crate::privacy::audit::Event {
            at: now,
            kind: kind.to_owned(),
            contact: Some(contact.as_str().to_owned()),
            actor: crate::privacy::audit::Actor::Customer,
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
}
