//! One job of the outbox, checked in order (retry state, age, window,
//! breaker, an unconfirmed earlier request, consent, a cancelled
//! campaign, rate limits) and then sent.

use super::*;

impl Sender {
    /// Handles one job.
    pub(super) async fn one(
        &self,
        claim: &Claim,
        id: &str,
        sealed: &[u8],
        mut state: HeadState,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        let now = self.clock.now();
        let now_ms = now * 1000;
        if state.next_at_ms > now_ms {
            return self.defer(claim, run, None, state.next_at_ms).await;
        }
        let job: Option<Job> = run
            .sealer
            .as_ref()
            .and_then(|sealer| sealer.open(sealed, &outbox_context(&claim.contact)).ok())
            .and_then(|p| serde_json::from_slice(&p).ok());
        let Some(job) = job else {
            let record = Delivery {
                job: format!("entry:{id}"),
                state: DeliveryState::Dead,
                at: now,
                wamid: None,
                kind: None,
                code: None,
                reason: Some("the queued job cannot be opened".into()),
                attempts: Some(0),
            };
            let letter = Letter {
                job: None,
                attempts: 0,
                code: None,
                reason: "the queued job cannot be opened".into(),
                at: now,
            };
            return self
                .give_up(claim, id, (record, Some(letter), None), run)
                .await;
        };
        let record = |state: DeliveryState, code: Option<i64>, reason: &str, attempts: u32| {
            record_of(&job, state, now, code, reason, attempts)
        };
        if matches!(job.message, Message::Erase) {
            // Everything before it (the final confirmation) is out: erase.
            // The outbox goes too, with this job and the claim's lease.
            let (store, keyring) = (self.store.as_ref(), &self.keyring);
            crate::privacy::erasure::erase(store, keyring, &self.audit, &claim.contact, now)
                .await?;
            return Ok(Next::Stop);
        }
        if matches!(job.message, Message::Hook { .. }) {
            return self.deliver(claim, id, &job, state, now_ms, run).await;
        }
        if now > job.created_at + self.settings.get().max_age.as_secs() {
            let r = record(
                DeliveryState::Expired,
                None,
                "waited longer than outbox.max_age",
                state.attempts,
            );
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if job.message.needs_window() {
            let open = match job.window_at {
                Some(at) => Some(at),
                None => self
                    .store
                    .windows(&claim.contact)
                    .await?
                    .into_iter()
                    .find(|(n, _)| *n == job.phone_number_id)
                    .map(|(_, at)| at),
            };
            if open.is_none_or(|at| now >= at + WINDOW_SECS) {
                let r = record(
                    DeliveryState::OutsideWindow,
                    None,
                    "the 24-hour customer service window is closed",
                    state.attempts,
                );
                return self.give_up(claim, id, (r, None, None), run).await;
            }
        }
        let number = job.phone_number_id.clone();
        let mut probing = false;
        if let Some(b) = self.breakers.get(self.store.as_ref(), &number).await? {
            let next = now + self.settings.get().probe_interval.as_secs().max(1);
            if self.store.take_probe(&number, now, next).await? {
                tracing::info!(phone_number_id = %number, "sending paused; probing with the next message");
                probing = true;
            } else {
                let until = b.probe_at.max(now + 1) * 1000;
                return self.defer(claim, run, None, until).await;
            }
        }
        if state.in_flight_at.is_some() {
            // An earlier request's answer is not known (the process died,
            // or no answer came): if a status webhook says Meta has the
            // message, it is done; else wait `outbox.unconfirmed_wait` for
            // one, counted from when this is first seen (a restart may come
            // long after the request), then send it.
            let known = self
                .store
                .deliveries(&claim.contact)
                .await?
                .into_iter()
                .any(|d| d.job == job.id);
            if known {
                tracing::info!(contact = %claim.contact, job = %job.id, "a message sent before a crash or timeout was confirmed by Meta; not sent again");
                let mut done =
                    Finish::record(record(DeliveryState::Accepted, None, "", state.attempts));
                done.stats.push((stats::MESSAGES_OUT.to_owned(), 1));
                return self.finish(claim, id, done, run).await;
            }
            let wait = self.settings.get().unconfirmed_wait.as_millis() as u64;
            match state.unconfirmed_since {
                None => {
                    state.unconfirmed_since = Some(now_ms);
                    let head = serde_json::to_vec(&state)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    return self.defer(claim, run, Some(head), now_ms + wait).await;
                }
                Some(since) if now_ms < since + wait => {
                    return self.defer(claim, run, None, since + wait).await;
                }
                Some(_) => {
                    tracing::warn!(contact = %claim.contact, job = %job.id, "no status came for a message whose request got no answer; sending it again");
                    state.unconfirmed_since = None;
                }
            }
        }
        // A message that needs consent (marketing) is checked before it
        // takes a rate-limit slot, and again right before the request: a
        // STOP acknowledged before that point stops it; no record at all
        // means no.
        // The reason is `opted_out` (withdrawn) or `no_consent` (never
        // given): campaign reports count skips by it.
        if let Some(reason) = self.refused(claim, &job).await? {
            let r = record(DeliveryState::NoConsent, None, reason, state.attempts);
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if let Some(campaign) = crate::store::campaign_of_job(&job.id) {
            // A cancelled campaign sends nothing more, even what is queued.
            let cancelled = self
                .store
                .campaign(campaign)
                .await?
                .is_some_and(|c| c.status == crate::campaign::CANCELLED);
            if cancelled {
                let r = record(
                    DeliveryState::Cancelled,
                    None,
                    "the campaign was cancelled",
                    state.attempts,
                );
                return self.give_up(claim, id, (r, None, None), run).await;
            }
        }
        if let Some(wait) = self.pace(&job, &claim.contact, run).await? {
            return self.defer(claim, run, None, now_ms + wait).await;
        }
        if let Some(reason) = self.refused(claim, &job).await? {
            let r = record(DeliveryState::NoConsent, None, reason, state.attempts);
            return self.give_up(claim, id, (r, None, None), run).await;
        }
        if job.origin == Origin::Business {
            // Recorded before the request: if the process dies before the
            // answer is written, the next sender waits for Meta's status
            // instead of sending the message a second time.
            state.in_flight_at = Some(now_ms);
            let head =
                serde_json::to_vec(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if !self.store.set_head(claim, head).await? {
                return Ok(Next::Stop);
            }
        }
        let answer = if matches!(job.message, Message::Export) {
            if state.attempts == 0 {
                self.audit_export(&claim.contact, "export_request", job.created_at)
                    .await;
            }
            self.send_export(&claim.contact, run.sealer.as_ref(), &job, now)
                .await?
        } else {
            self.graph.send(&job).await
        };
        match answer {
            Answer::Accepted { wamid } => {
                if matches!(job.message, Message::Export) {
                    self.audit_export(&claim.contact, "export_completed", now)
                        .await;
                }
                if probing {
                    self.store.close_breaker(Some(&number)).await?;
                    self.breakers.set(&number, None);
                    self.store.wake_deferred().await?;
                    self.wake.outbox.sweep_soon();
                    tracing::info!(phone_number_id = %number, "probe accepted; sending resumed");
                }
                let mut r = record(DeliveryState::Accepted, None, "", state.attempts);
                r.wamid = wamid.map(|w| self.pseudonymizer.tag("wamid", &w));
                if matches!(job.message, Message::MarkRead { .. }) {
                    // A read receipt is not a message: Meta sends no status
                    // for it, so it gets no record. Sending it twice after
                    // a crash changes nothing, so its removal rides on the
                    // claim's next write.
                    if !run.last {
                        run.sent.push(id.to_owned());
                        return Ok(Next::Finished);
                    }
                    r.job.clear();
                    r.wamid = None;
                }
                let mut done = Finish::record(r);
                if !matches!(job.message, Message::MarkRead { .. }) {
                    done.stats.push((stats::MESSAGES_OUT.to_owned(), 1));
                }
                if matches!(job.message, Message::Export) {
                    done.stats.push((stats::EXPORTS.to_owned(), 1));
                }
                self.finish(claim, id, done, run).await
            }
            Answer::Failed(f) => {
                self.failed(claim, id, (&job, f), &mut state, now_ms, run)
                    .await
            }
        }
    }
}
