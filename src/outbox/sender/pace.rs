//! Consent checked right before sending, and the rate limits shared by
//! every instance (the number's, and the recipient's pair limit).

use super::*;

impl Sender {
    /// Why the contact's ledger does not allow the job now; `None`: it
    /// may go (a service message always may).
    pub(super) async fn refused(
        &self,
        claim: &Claim,
        job: &Job,
    ) -> Result<Option<crate::domain::consent::Refusal>, StoreError> {
        let Some(purpose) = &job.purpose else {
            return Ok(None);
        };
        let ledger = self.store.consent(&claim.contact).await?;
        Ok(crate::privacy::consent::refusal(&ledger, purpose))
    }

    /// Takes the rate-limit slots a job needs; `Some(ms)` when it must
    /// wait longer than a moment. The number's limit is taken for the
    /// claim's remaining jobs at once (as many as are free), so a reply of
    /// a few messages costs one call to the store.
    pub(super) async fn pace(
        &self,
        job: &Job,
        contact: &ContactKey,
        run: &mut Run,
    ) -> Result<Option<u64>, StoreError> {
        if job.origin == Origin::Business {
            let key = format!("pair:{contact}");
            let interval = self.settings.get().pair_interval.as_micros() as u64;
            if let Some(wait) = self
                .take(&key, interval, self.settings.get().pair_burst, 1)
                .await?
                .err()
            {
                return Ok(Some(wait));
            }
        }
        let number = &job.phone_number_id;
        if let Some((n, taken)) = run.slots.get_mut(number)
            && *n > 0
            && taken.elapsed() < SLOT_LIFE
        {
            *n -= 1;
            return Ok(None);
        }
        let mps = u64::from(self.settings.get().messages_per_second.max(1));
        // In microseconds: 80/s is 12,500 µs (milliseconds would round it
        // to 12 ms, a little over Meta's limit, and cap the rate at 1,000/s).
        let interval = (1_000_000 / mps).max(1);
        let burst = (self.settings.get().messages_per_second / 10).max(1);
        match self
            .take(&format!("pn:{number}"), interval, burst, run.left)
            .await?
        {
            Ok(granted) => {
                run.slots
                    .insert(number.clone(), (granted.saturating_sub(1), Instant::now()));
                Ok(None)
            }
            Err(wait) => Ok(Some(wait)),
        }
    }

    /// Takes up to `want` slots of a rate limit, sleeping through short
    /// waits: `Ok(slots)`, or `Err(ms)` for a longer wait.
    pub(super) async fn take(
        &self,
        key: &str,
        interval: u64,
        burst: u32,
        want: u32,
    ) -> Result<Result<u32, u64>, StoreError> {
        loop {
            let grant = self.store.take_rate(key, interval, burst, want).await?;
            if grant.granted > 0 {
                return Ok(Ok(grant.granted));
            }
            if grant.wait_ms > SHORT_WAIT_MS {
                return Ok(Err(grant.wait_ms));
            }
            tokio::time::sleep(Duration::from_millis(grant.wait_ms)).await;
        }
    }
}
