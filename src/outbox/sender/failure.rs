//! What Meta's refusal of a job means: retried with backoff, slowed,
//! paused, or given up.

use super::*;

impl Sender {
    /// The withdrawal of marketing consent Meta's 131050 tells of, under
    /// the policy and in the statistics of the business the number is.
    fn marketing_stopped(
        &self,
        job: &Job,
        now: u64,
        run: &Run,
    ) -> crate::domain::consent::ConsentChange {
        crate::domain::consent::ConsentChange {
            purpose: "marketing".into(),
            granted: false,
            at: now,
            source: "meta:131050".into(),
            policy_version: self
                .businesses
                .of_number(&job.phone_number_id)
                .map_or(&self.policy_version, |b| &b.policy_version)
                .clone(),
            evidence: Some(format!("job:{}", job.id)),
            business: run.business.clone(),
        }
    }

    pub(super) async fn failed(
        &self,
        claim: &Claim,
        id: &str,
        (job, f): (&Job, Failure),
        state: &mut HeadState,
        now_ms: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let now = now_ms / 1000;
        let reason = if f.code == Some(MARKETING_STOPPED_CODE) {
            "the customer stopped marketing messages"
        } else {
            f.reason.as_str()
        };
        let record = |st: DeliveryState, attempts: u32| {
            record_of(job, st, now, f.code, reason, attempts.max(1))
        };
        if f.code.is_some() || f.http.is_some() {
            // Meta answered: it does not have the message, so a retry needs
            // not wait for a status.
            state.in_flight_at = None;
        }
        match f.class {
            Class::Permanent => {
                let r = record(DeliveryState::Failed, state.attempts + 1);
                // Meta says the customer stopped marketing messages: that
                // is a withdrawal of marketing consent, recorded with it.
                let consent = (f.code == Some(MARKETING_STOPPED_CODE))
                    .then(|| self.marketing_stopped(job, now, run));
                self.give_up(claim, id, (r, None, consent), run).await
            }
            Class::Credentials => {
                let probe = self.settings.get().probe_interval.as_secs().max(1);
                let b = Breaker {
                    code: f.code.unwrap_or(0),
                    reason: f.reason.clone(),
                    since: now,
                    probe_at: now + probe,
                };
                tracing::error!(
                    phone_number_id = %job.phone_number_id,
                    code = ?f.code,
                    reason = %f.reason,
                    "Meta refused the access token or its permissions: sending paused for this number"
                );
                self.store
                    .open_breaker(&job.phone_number_id, b.clone())
                    .await?;
                self.breakers.set(&job.phone_number_id, Some(b));
                let head =
                    serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.defer(claim, run, Some(head), (now + probe) * 1000)
                    .await
            }
            Class::Transient | Class::Throttled | Class::PairLimit => {
                if state.attempts + 1 < self.settings.get().max_attempts {
                    let class = match f.class {
                        Class::Throttled => "throttled",
                        Class::PairLimit => "pair_limit",
                        _ => "transient",
                    };
                    let business = BusinessId::of_tag(run.business.as_ref());
                    crate::metrics::global()
                        .retries
                        .with_label_values(&[business.as_str(), class])
                        .inc();
                }
                state.attempts += 1;
                state.last_code = f.code;
                state.last_error = f.reason.clone();
                if state.attempts >= self.settings.get().max_attempts {
                    let letter = Letter {
                        job: Some(job.clone()),
                        attempts: state.attempts,
                        code: f.code,
                        reason: f.reason.clone(),
                        at: now,
                    };
                    let r = record(DeliveryState::Dead, state.attempts);
                    return self.give_up(claim, id, (r, Some(letter), None), run).await;
                }
                let delay = if f.class == Class::PairLimit {
                    // Meta: retry after 4^X seconds, X = 0, 1, 2, …
                    let d = Duration::from_secs(4u64.saturating_pow(state.pair_hits));
                    state.pair_hits += 1;
                    d.min(self.settings.get().retry_cap)
                } else {
                    backoff(
                        self.settings.get().retry_base,
                        self.settings.get().retry_cap,
                        state.attempts,
                    )
                };
                let delay_ms = (delay.as_millis() as u64).max(1);
                if f.class == Class::Throttled {
                    self.store
                        .hold_rate(&format!("pn:{}", job.phone_number_id), delay_ms)
                        .await?;
                }
                tracing::warn!(
                    contact = %claim.contact,
                    job = %job.id,
                    attempt = state.attempts,
                    retry_in_ms = delay_ms,
                    reason = %f.reason,
                    "send failed; will retry"
                );
                self.retry_at(claim, run, state, now_ms + delay_ms).await
            }
        }
    }
}
