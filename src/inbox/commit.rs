//! The end of a step: consent kept only where it changes something, the
//! step sealed and committed, audited and counted.

use super::share::Cause;
use super::*;

impl Worker {
    /// Keeps only the consent entries that change something, so that a
    /// customer repeating a choice (a flow's opt-in tapped again, STOP sent
    /// twice) adds nothing to the kept-forever ledger or the audit log and
    /// no `consent.changed` event: the step's own entries are judged
    /// against the ledger, and those recorded at ingress are kept only if
    /// the ledger holds them (ingress recorded only the ones that changed
    /// something). A grant of the step's own beyond the day's grants is
    /// not kept either (see [`crate::privacy::consent::decide`]); answers
    /// whether there was one.
    pub(super) async fn changes_only(
        &self,
        contact: &ContactKey,
        consent: &mut Vec<ConsentChange>,
        causes: &mut [Cause],
    ) -> Result<bool, StoreError> {
        use crate::privacy::consent::{Decision, decide, on_record};
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
