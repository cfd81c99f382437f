//! The operations role: health, statistics, retention, rate limits,
//! breakers and console sessions.

use async_trait::async_trait;

use crate::store::StoreError;

/// The answer of [`Store::take_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// Slots taken (at most the number asked for); 0 when none is free.
    pub granted: u32,
    /// With nothing granted: milliseconds until one slot is free.
    pub wait_ms: u64,
}

/// A number's sending is paused (a circuit breaker, shared by every
/// instance on the store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Breaker {
    /// Why: the Meta error code and a short reason.
    pub code: i64,
    pub reason: String,
    /// Since when (Unix seconds).
    pub since: u64,
    /// When the next probe may be tried (Unix seconds).
    pub probe_at: u64,
}

/// Anonymous counters: (name, amount). Names are fixed words or a flow's
/// and step's ids, never anything about a contact.
pub type Counts = Vec<(String, u64)>;

/// Statistics per day (YYYY-MM-DD): each counter's total.
pub type DailyStats = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

/// Operations shared by every instance: health, statistics, retention,
/// rate limits, circuit breakers and console sessions.
#[async_trait]
pub trait OpsStore: Send + Sync {
    /// Checks the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The anonymous statistics of `days` (YYYY-MM-DD): per day, each
    /// counter's total across the store.
    async fn stats(&self, days: &[String]) -> Result<DailyStats, StoreError>;

    /// Removes what is past its time to live at `now` (Unix s): delivery
    /// records and dead letters (30 days), windows (2 days), profiles,
    /// sessions and data keys past their expiry, statistics older than
    /// [`stats::KEEP_DAYS`]. Answers how many records went. Redis expires
    /// its keys itself: nothing to do there.
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let _ = now;
        Ok(0)
    }

    /// A rate limit shared by every instance (GCRA): one slot per
    /// `interval_us` microseconds, bursts of `burst`. Takes as many of
    /// `want` slots as are free now (at least one), or takes nothing and
    /// answers how many milliseconds to wait for one (rounded up).
    async fn take_rate(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
        want: u32,
    ) -> Result<RateGrant, StoreError>;

    /// Pushes `key`'s rate limit back so that nothing passes for `ms`
    /// (Meta said to slow down).
    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError>;

    /// Keeps a console session's (sealed) record under `key` until
    /// `expires_at` (Unix s), replacing what was there. Shared by every
    /// instance on the same store, so an operator stays signed in
    /// whichever instance answers.
    async fn put_console_session(
        &self,
        key: &str,
        record: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError>;

    /// A console session's record, unless it has expired by `now` (Unix s)
    /// or was ended.
    async fn console_session(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Ends a console session.
    async fn end_console_session(&self, key: &str) -> Result<(), StoreError>;

    /// Ends every console session (the admin credential changed).
    async fn end_console_sessions(&self) -> Result<(), StoreError>;

    /// Opens (or keeps open) the breaker of a business number.
    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError>;

    /// Closes a number's breaker; `None` closes every one.
    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError>;

    /// The open breakers.
    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError>;

    /// Takes the right to probe a paused number: true for exactly one
    /// caller once `probe_at` has passed, and moves `probe_at` to `next`.
    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError>;
}
