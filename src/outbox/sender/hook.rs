//! An integration event's turn: carried out by
//! [`crate::integrations::delivery`], its answer recorded here.

use super::*;

impl Sender {
    /// Delivers an integration event (see
    /// [`crate::integrations::delivery`]): retried with backoff, then a
    /// dead letter.
    pub(super) async fn deliver(
        &self,
        claim: &Claim,
        id: &str,
        job: &Job,
        mut state: HeadState,
        now_ms: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        use crate::integrations::delivery::Delivered;
        let now = now_ms / 1000;
        let (store, audit) = (self.store.as_ref(), &self.audit);
        let Some(delivered) = (self.hooks)
            .deliver(store, audit, job, &state.last_error, now)
            .await?
        else {
            return Ok(Next::Stop);
        };
        let record = |st: DeliveryState, reason: &str, attempts: u32| {
            record_of(job, st, now, None, reason, attempts)
        };
        match delivered {
            Delivered::Accepted => {
                let r = record(DeliveryState::Accepted, "", state.attempts + 1);
                self.finish(claim, id, Finish::record(r), run).await
            }
            Delivered::Dead { reason, letter } => {
                let letter = letter.then(|| Letter {
                    job: Some(job.clone()),
                    attempts: state.attempts,
                    code: None,
                    reason: reason.clone(),
                    at: now,
                });
                let r = record(DeliveryState::Dead, &reason, state.attempts);
                self.give_up(claim, id, (r, letter, None), run).await
            }
            Delivered::Cancelled(reason) => {
                let r = record(DeliveryState::Cancelled, &reason, state.attempts);
                self.give_up(claim, id, (r, None, None), run).await
            }
            Delivered::Retry(reason) => {
                state.attempts += 1;
                state.last_error = reason;
                let settings = self.settings.get();
                let delay = backoff(settings.retry_base, settings.retry_cap, state.attempts);
                let delay_ms = (delay.as_millis() as u64).max(1);
                tracing::warn!(
                    contact = %claim.contact,
                    attempt = state.attempts,
                    retry_in_ms = delay_ms,
                    reason = %state.last_error,
                    "integration delivery failed; will retry"
                );
                self.retry_at(claim, run, &mut state, now_ms + delay_ms)
                    .await
            }
        }
    }
}
