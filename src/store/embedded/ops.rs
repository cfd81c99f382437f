//! The embedded backend: the operations role (see [`crate::store::OpsStore`]).

use super::*;
use crate::store::OpsStore;

#[async_trait]
impl OpsStore for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        self.writer.send(Job::Ping(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?;
        self.blocking(|db| {
            let txn = db.begin_read().map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.write(move |txn| purge_expired(txn, now)).await
    }

    async fn stats(&self, days: &[String]) -> Result<crate::store::DailyStats, StoreError> {
        let days = days.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(STATS).map_err(corrupt)?;
            let mut out = std::collections::BTreeMap::new();
            for day in &days {
                let mut totals = std::collections::BTreeMap::new();
                for item in t
                    .range((day.as_str(), "")..(format!("{day}\0").as_str(), ""))
                    .map_err(corrupt)?
                {
                    let (k, v) = item.map_err(corrupt)?;
                    totals.insert(k.value().1.to_owned(), v.value());
                }
                if !totals.is_empty() {
                    out.insert(day.clone(), totals);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn take_rate(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
        want: u32,
    ) -> Result<RateGrant, StoreError> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_us();
        let interval = interval_us.max(1);
        let tat = rates.get(key).copied().unwrap_or(0).max(now);
        let burst = u64::from(burst.max(1));
        let free = (now + burst * interval).saturating_sub(tat) / interval;
        if free == 0 {
            return Ok(RateGrant {
                granted: 0,
                wait_ms: (tat - now - (burst - 1) * interval).div_ceil(1000),
            });
        }
        let granted = free.min(u64::from(want.max(1)));
        rates.insert(key.to_owned(), tat + granted * interval);
        Ok(RateGrant {
            granted: granted as u32,
            wait_ms: 0,
        })
    }

    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let until = now_us() + ms * 1000;
        let tat = rates.entry(key.to_owned()).or_insert(0);
        *tat = (*tat).max(until);
        Ok(())
    }

    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        b.entry(number.to_owned()).or_insert(breaker);
        Ok(())
    }

    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match number {
            Some(n) => {
                b.remove(n);
            }
            None => b.clear(),
        }
        Ok(())
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        let b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Breaker)> =
            b.iter().map(|(n, b)| (n.clone(), b.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn put_console_session(
        &self,
        key: &str,
        record: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut m = self.console.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::clock::now_secs();
        m.retain(|_, (at, _)| *at > now);
        if m.len() >= CONSOLE_SESSIONS_MAX
            && !m.contains_key(key)
            && let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        m.insert(key.to_owned(), (expires_at, record));
        Ok(())
    }

    async fn console_session(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let m = self.console.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(key)
            .filter(|(at, _)| *at > now)
            .map(|(_, r)| r.clone()))
    }

    async fn end_console_sessions(&self) -> Result<(), StoreError> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    async fn end_console_session(&self, key: &str) -> Result<(), StoreError> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }

    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match b.get_mut(number) {
            Some(br) if br.probe_at <= now => {
                br.probe_at = next;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
