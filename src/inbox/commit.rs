//! The end of a step: consent kept only where it changes something, the
//! step sealed and committed, audited and counted.

use super::seal::{outbox_context, seal_json};
use super::share::{Cause, Sharing};
use super::turn::Turn;
use super::*;
use crate::domain::audit::{Actor, AuditEvent};
use crate::privacy::export::history_context;

impl Worker {
    /// Keeps the consent that changes something (answering a refused
    /// grant), then tells the receivers what the step did.
    pub(super) async fn settle(
        &self,
        turn: &mut Turn,
        claim: &Claim,
        sealer: &Sealer,
    ) -> Result<(), StoreError> {
        turn.state.completed.clear();
        if !turn.consent.is_empty() || turn.causes.iter().any(|c| !c.consent.is_empty()) {
            let refused = self
                .changes_only(&turn.contact, &mut turn.consent, &mut turn.causes)
                .await?;
            if refused {
                // A flow's opt-in beyond the day's grants: not recorded,
                // and the customer is told.
                turn.profile.marketing = Some(false);
                self.grant_refused(&turn.contact, &turn.state, &mut turn.jobs, turn.now);
            }
        }
        if turn.sharing {
            let step = Sharing {
                claim,
                causes: &turn.causes,
                jobs: &turn.jobs,
                history: &turn.history,
                now: turn.now,
            };
            self.share(step, sealer, &mut turn.profile).await?;
        }
        Ok(())
    }

    /// Commits the step; once done, audits it, counts it and wakes the
    /// stages that have work.
    pub(super) async fn finish(
        &self,
        mut turn: Turn,
        claim: &Claim,
        sealer: &Sealer,
    ) -> Result<Outcome, StoreError> {
        let audited = self.audited(&mut turn);
        let commit = self.sealed(&mut turn, sealer)?;
        let contact = turn.contact;
        let (events, jobs) = (commit.acked.len(), turn.jobs.len());
        let counted = (commit.stats.clone(), commit.consent.clone());
        match self.store.commit(claim, commit).await? {
            Committed::LeaseLost => {
                tracing::warn!(contact = %contact, "lease lost; another worker redoes the batch");
                Ok(Outcome::LeaseLost(contact))
            }
            Committed::Done { inbox_left } => {
                crate::metrics::global().counted(&counted.0, counted.1.iter());
                tracing::info!(contact = %contact, events, jobs, "conversation step");
                for event in audited {
                    crate::privacy::audit::note(self.store.as_ref(), &self.audit, event).await;
                }
                if jobs > 0 {
                    self.wake.outbox.push(contact.clone());
                }
                if inbox_left > 0 {
                    self.wake.inbox.push(contact.clone());
                }
                Ok(Outcome::Worked {
                    contact,
                    events,
                    jobs,
                })
            }
        }
    }

    /// The audit entries of the step: its consent, and the course of an
    /// erasure request (which marks the profile).
    fn audited(&self, turn: &mut Turn) -> Vec<AuditEvent> {
        let confirmed = turn.held_erasure
            || turn
                .jobs
                .iter()
                .any(|j| matches!(j.message, OutMessage::Erase));
        let erasure = crate::privacy::requests::erasure_events(
            (
                turn.profile_before.erase_asked_at,
                turn.profile.erase_asked_at,
            ),
            confirmed,
            &mut turn.profile.erase_audit,
            turn.now,
        );
        let contact = &turn.contact;
        let business = self.business_of(turn);
        let mut audited: Vec<AuditEvent> = turn
            .consent
            .iter()
            .map(|c| crate::privacy::audit::of_consent(contact.as_str(), c))
            .collect();
        let erase_event = |kind: &str| AuditEvent {
            at: turn.now,
            kind: kind.to_owned(),
            contact: Some(contact.as_str().to_owned()),
            actor: Actor::Customer,
            detail: None,
            business: business.clone(),
            by: None,
        };
        audited.extend(erasure.into_iter().map(erase_event));
        audited
    }

    /// The step's writes, sealed under the contact's data key.
    fn sealed(&self, turn: &mut Turn, sealer: &Sealer) -> Result<Commit, StoreError> {
        let business = self.business_of(turn);
        let contact = &turn.contact;
        let session = serde_json::to_vec(&turn.state)
            .ok()
            .and_then(|plain| sealer.seal(&plain, &session_context(contact)).ok());
        let outbox = (turn.jobs.iter())
            .map(|job| seal_json(sealer, job, &outbox_context(contact)))
            .collect::<Result<Vec<_>, _>>()?;
        let wake_at = turn.state.session.as_ref().and_then(|s| s.deadline);
        (turn.history).extend(
            turn.jobs
                .iter()
                .filter_map(crate::privacy::export::outbound),
        );
        let history = (turn.history.iter())
            .map(|item| seal_json(sealer, item, &history_context(contact)))
            .collect::<Result<Vec<_>, _>>()?;
        // Written only when something changed (a status update is not
        // the contact writing in, and does not extend the profile's life).
        let profile = if turn.profile != turn.profile_before && !turn.unreadable {
            Some(seal_json(sealer, &turn.profile, &profile_context(contact))?)
        } else {
            None
        };
        Ok(Commit {
            acked: std::mem::take(&mut turn.acked),
            session,
            session_ttl: self.session_ttl,
            outbox,
            wake_at,
            window: turn.window.take(),
            deliveries: std::mem::take(&mut turn.deliveries),
            consent: std::mem::take(&mut turn.consent),
            profile,
            history,
            profile_ttl: self.profile_ttl,
            stats: stats_of(turn, business.as_ref()),
        })
    }

    /// The business of the turn's contact (`None`: `default`): that of the
    /// number the customer wrote to, the conversation is on, or a reply
    /// goes out from (all of a contact's numbers are its business's).
    pub(super) fn business_of(&self, turn: &Turn) -> Option<crate::domain::BusinessId> {
        let number = (turn.window.as_ref().map(|(n, _)| n))
            .or(turn.state.phone_number_id.as_ref())
            .or(turn.jobs.first().map(|j| &j.phone_number_id))?;
        self.policies.for_number(number).business.tag()
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
    pub(super) async fn changes_only(
        &self,
        contact: &ContactKey,
        consent: &mut Vec<ConsentChange>,
        causes: &mut [Cause],
    ) -> Result<bool, StoreError> {
        use crate::domain::consent::{Decision, decide};
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
}

/// Anonymous: how many messages came in, which steps ran, in the
/// statistics of `business` (`None`: `default`).
fn stats_of(turn: &mut Turn, business: Option<&crate::domain::BusinessId>) -> crate::store::Counts {
    use crate::store::stats::{MESSAGES_IN, scoped};
    let mut stats: crate::store::Counts = Vec::new();
    if turn.messages_in > 0 {
        stats.push((scoped(business, MESSAGES_IN), turn.messages_in));
    }
    let mut steps: std::collections::BTreeMap<String, u64> = Default::default();
    for step in std::mem::take(&mut turn.state.steps_run) {
        *steps.entry(scoped(business, &step)).or_default() += 1;
    }
    stats.extend(steps);
    stats
}
