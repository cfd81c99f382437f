//! What a step shares with the CRM and helpdesk receivers: the causes
//! each inbox entry (or timeout) gives for integration events, and the
//! events queued for them before the step is committed.

use super::*;

/// How many earlier messages `handoff.requested` carries (both ways).
pub(super) const RECENT: usize = 20;

/// What a step did, for [`Worker::share`].
pub(super) struct Sharing<'a> {
    pub(super) claim: &'a Claim,
    /// What each entry (or the timeout) did, in order.
    pub(super) causes: &'a [Cause],
    pub(super) jobs: &'a [Job],
    pub(super) history: &'a [crate::privacy::export::HistoryItem],
    pub(super) now: u64,
}

/// What one inbox entry (or a timeout) did that receivers may hear of.
#[derive(Default)]
pub(super) struct Cause {
    /// The entry's id, or `tick<at>`: part of each event's id.
    pub(super) key: String,
    pub(super) created: bool,
    /// Consent recorded at ingress, then what the flows recorded.
    pub(super) consent: Vec<ConsentChange>,
    /// A handed-off customer's message (its text, if any).
    pub(super) forwarded: Option<Option<String>>,
    pub(super) completed: Vec<(String, std::collections::BTreeMap<String, String>)>,
    pub(super) handoff: bool,
    pub(super) export: bool,
    pub(super) renamed: bool,
    pub(super) erased: bool,
}

/// Where a step stood before an entry, to tell what the entry did.
pub(super) struct Before {
    pub(super) consent: usize,
    pub(super) completed: usize,
    pub(super) handed_off: bool,
    pub(super) name: Option<String>,
    pub(super) exports: usize,
    pub(super) erasures: usize,
}

impl Before {
    pub(super) fn of(
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
    pub(super) fn cause(
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

impl Worker {
    /// Queues the integration events of a step for the CRM and helpdesk
    /// receivers (see [`crate::integrations`]), before the step is
    /// committed, in the order of the entries that caused them. Each
    /// event's id names the entry (or the timeout) that caused it, so a
    /// step redone after a crash, even with more entries, queues the same
    /// events under the same ids, which the store keeps once.
    pub(super) async fn share(
        &self,
        step: Sharing<'_>,
        sealer: &Sealer,
        profile: &mut Profile,
    ) -> Result<(), StoreError> {
        use crate::integrations::{EventKind, Field, HookEvent as Shared};
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
    pub(super) async fn recent(
        &self,
        contact: &ContactKey,
        sealer: &Sealer,
        step: &Sharing<'_>,
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
}
