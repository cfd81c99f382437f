//! The time the pipeline works with: the system clock, optionally moved
//! by an offset, so tests (and `whatsify chat`'s `/wait`) can let hours
//! pass without waiting for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock: system time plus an adjustable offset (seconds).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        let real = now_secs() as i64;
        (real + self.offset.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
