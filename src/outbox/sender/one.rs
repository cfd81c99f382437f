//! One job of the outbox, checked in order (retry state, age, window,
//! breaker, an unconfirmed earlier request, consent, a cancelled
//! campaign, rate limits) and then sent.

use super::*;

/// Why a job is given up before it is sent: its record's state and reason.
type Barred = (DeliveryState, &'static str);

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
            return self.unreadable(claim, id, now, run).await;
        };
        run.business = self.business_of(&job.phone_number_id);
        let mut job = job;
        if matches!(job.message, Message::Erase) {
            let (store, keyring) = (self.store.as_ref(), &self.keyring);
            let business = BusinessId::of_tag(run.business.as_ref());
            let whose = (&claim.contact, &business);
            if crate::privacy::erasure::held(store, keyring, &self.audit, whose, now).await? {
                // A legal hold came since the customer confirmed: the
                // erasure waits for its end, and the customer is told so
                // by this job, sent as the message it becomes.
                job.message = crate::privacy::erasure::held_message();
            } else {
                // Everything before it (the final confirmation) is out:
                // erase. The outbox goes too, with this job and the
                // claim's lease.
                crate::privacy::erasure::erase(store, keyring, &self.audit, whose, now).await?;
                return Ok(Next::Stop);
            }
        }
        let give_up = |(st, reason): Barred, attempts| {
            (record_of(&job, st, now, None, reason, attempts), None, None)
        };
        if matches!(job.message, Message::Hook { .. }) {
            return self.deliver(claim, id, &job, state, now_ms, run).await;
        }
        if let Some(barred) = self.too_late(claim, &job, now).await? {
            let r = give_up(barred, state.attempts);
            return self.give_up(claim, id, r, run).await;
        }
        let probing = match self.breaker(&job.phone_number_id, now).await? {
            Ok(probing) => probing,
            Err(until) => return self.defer(claim, run, None, until).await,
        };
        if state.in_flight_at.is_some()
            && let Some(next) = self
                .unconfirmed(claim, id, &job, &mut state, now_ms, run)
                .await?
        {
            return Ok(next);
        }
        if let Some(barred) = self.barred(claim, &job).await? {
            let r = give_up(barred, state.attempts);
            return self.give_up(claim, id, r, run).await;
        }
        if let Some(wait) = self.pace(&job, &claim.contact, run).await? {
            return self.defer(claim, run, None, now_ms + wait).await;
        }
        if let Some(reason) = self.refused(claim, &job).await? {
            let r = give_up((DeliveryState::NoConsent, reason.as_str()), state.attempts);
            return self.give_up(claim, id, r, run).await;
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
                self.audit_export(&claim.contact, run, "export_request", job.created_at)
                    .await;
            }
            self.send_export(&claim.contact, run.sealer.as_ref(), &job, now)
                .await?
        } else {
            self.graph.send(&job).await
        };
        match answer {
            Answer::Accepted { wamid } => {
                let sent = (&job, wamid, probing);
                self.accepted(claim, id, sent, &state, now, run).await
            }
            Answer::Failed(f) => {
                self.failed(claim, id, (&job, f), &mut state, now_ms, run)
                    .await
            }
        }
    }

    /// A queued job that cannot be opened: a dead letter without it.
    async fn unreadable(
        &self,
        claim: &Claim,
        id: &str,
        now: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
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
        self.give_up(claim, id, (record, Some(letter), None), run)
            .await
    }

    /// Too late to send: older than `outbox.max_age`, or a free-form
    /// message outside the 24-hour window.
    async fn too_late(
        &self,
        claim: &Claim,
        job: &Job,
        now: u64,
    ) -> Result<Option<Barred>, StoreError> {
        if now > job.created_at + self.settings.get().max_age.as_secs() {
            let expired = "waited longer than outbox.max_age";
            return Ok(Some((DeliveryState::Expired, expired)));
        }
        if !job.message.needs_window() {
            return Ok(None);
        }
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
        let closed = "the 24-hour customer service window is closed";
        Ok(open
            .is_none_or(|at| now >= at + WINDOW_SECS)
            .then_some((DeliveryState::OutsideWindow, closed)))
    }

    /// The number's breaker: `Ok(false)` when closed, `Ok(true)` when this
    /// job is the probe, `Err(until_ms)` while paused.
    async fn breaker(&self, number: &str, now: u64) -> Result<Result<bool, u64>, StoreError> {
        let Some(b) = self.breakers.get(self.store.as_ref(), number).await? else {
            return Ok(Ok(false));
        };
        let next = now + self.settings.get().probe_interval.as_secs().max(1);
        if self.store.take_probe(number, now, next).await? {
            tracing::info!(phone_number_id = %number, "sending paused; probing with the next message");
            Ok(Ok(true))
        } else {
            Ok(Err(b.probe_at.max(now + 1) * 1000))
        }
    }

    /// An earlier request's answer is not known (the process died, or no
    /// answer came): if a status webhook says Meta has the message, it is
    /// done; else wait `outbox.unconfirmed_wait` for one, counted from when
    /// this is first seen (a restart may come long after the request),
    /// then send it (`None`).
    async fn unconfirmed(
        &self,
        claim: &Claim,
        id: &str,
        job: &Job,
        state: &mut HeadState,
        now_ms: u64,
        run: &mut Run,
    ) -> Result<Option<Next>, StoreError> {
        let known = (self.store.deliveries(&claim.contact).await?)
            .into_iter()
            .any(|d| d.job == job.id);
        if known {
            tracing::info!(contact = %claim.contact, job = %job.id, "a message sent before a crash or timeout was confirmed by Meta; not sent again");
            let record = record_of(
                job,
                DeliveryState::Accepted,
                now_ms / 1000,
                None,
                "",
                state.attempts,
            );
            let mut done = Finish::record(record);
            let sent = stats::scoped(run.business.as_ref(), stats::MESSAGES_OUT);
            done.stats.push((sent, 1));
            return self.finish(claim, id, done, run).await.map(Some);
        }
        let wait = self.settings.get().unconfirmed_wait.as_millis() as u64;
        match state.unconfirmed_since {
            None => {
                state.unconfirmed_since = Some(now_ms);
                let head =
                    serde_json::to_vec(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let next = self.defer(claim, run, Some(head), now_ms + wait).await?;
                Ok(Some(next))
            }
            Some(since) if now_ms < since + wait => {
                Ok(Some(self.defer(claim, run, None, since + wait).await?))
            }
            Some(_) => {
                tracing::warn!(contact = %claim.contact, job = %job.id, "no status came for a message whose request got no answer; sending it again");
                state.unconfirmed_since = None;
                Ok(None)
            }
        }
    }

    /// Not to be sent at all: the consent it needs is missing, or its
    /// campaign was cancelled.
    async fn barred(&self, claim: &Claim, job: &Job) -> Result<Option<Barred>, StoreError> {
        // A message that needs consent (marketing) is checked before it
        // takes a rate-limit slot, and again right before the request: a
        // STOP acknowledged before that point stops it; no record at all
        // means no.
        // The reason is `opted_out` (withdrawn) or `no_consent` (never
        // given): campaign reports count skips by it.
        if let Some(reason) = self.refused(claim, job).await? {
            return Ok(Some((DeliveryState::NoConsent, reason.as_str())));
        }
        if let Some(campaign) = crate::store::campaign_of_job(&job.id) {
            // A cancelled campaign sends nothing more, even what is queued.
            let cancelled =
                self.store.campaign(campaign).await?.is_some_and(|c| {
                    c.status == crate::domain::campaign::CampaignStatus::Cancelled
                });
            if cancelled {
                let reason = "the campaign was cancelled";
                return Ok(Some((DeliveryState::Cancelled, reason)));
            }
        }
        Ok(None)
    }

    /// Meta accepted the job: a probe closes the breaker; the job is
    /// recorded (a read receipt is not) and counted.
    async fn accepted(
        &self,
        claim: &Claim,
        id: &str,
        (job, wamid, probing): (&Job, Option<String>, bool),
        state: &HeadState,
        now: u64,
        run: &mut Run,
    ) -> Result<Next, StoreError> {
        if matches!(job.message, Message::Export) {
            self.audit_export(&claim.contact, run, "export_completed", now)
                .await;
        }
        if probing {
            let number = &job.phone_number_id;
            self.store.close_breaker(Some(number)).await?;
            self.breakers.set(number, None);
            self.store.wake_deferred().await?;
            self.wake.outbox.sweep_soon();
            tracing::info!(phone_number_id = %number, "probe accepted; sending resumed");
        }
        let mut r = record_of(job, DeliveryState::Accepted, now, None, "", state.attempts);
        r.wamid = wamid.map(|w| self.pseudonymizer.tag("wamid", &w));
        if matches!(job.message, Message::MarkRead { .. }) {
            // A read receipt is not a message: Meta sends no status for
            // it, so it gets no record. Sending it twice after a crash
            // changes nothing, so its removal rides on the claim's next
            // write.
            if !run.last {
                run.sent.push(id.to_owned());
                return Ok(Next::Finished);
            }
            r.job.clear();
            r.wamid = None;
        }
        let mut done = Finish::record(r);
        let counter = |name| (stats::scoped(run.business.as_ref(), name), 1);
        if !matches!(job.message, Message::MarkRead { .. }) {
            done.stats.push(counter(stats::MESSAGES_OUT));
        }
        if matches!(job.message, Message::Export) {
            done.stats.push(counter(stats::EXPORTS));
        }
        self.finish(claim, id, done, run).await
    }
}
