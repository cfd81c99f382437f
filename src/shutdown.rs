//! Graceful shutdown: one flag every loop checks, set on SIGTERM/SIGINT.
//! The webhook answers 503 from then on, workers and senders finish the
//! contact in hand and stop taking new ones; what is queued stays queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Shutdown {
    stopping: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Starts the shutdown: loops end after the work in hand.
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Sleeps for `d`, or less when the shutdown starts.
    pub async fn sleep(&self, d: Duration) {
        if self.is_stopping() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.notify.notified() => {}
        }
    }

    /// Sleeps for `d`, or less when the shutdown starts or `wake` is
    /// signalled (new work arrived in this instance).
    pub async fn idle(&self, d: Duration, wake: &Notify) {
        tokio::select! {
            _ = self.sleep(d) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Wakes an idle worker when this instance queued inbox work, and an idle
/// sender when it queued outbox work, so a message does not wait for the
/// next poll. Work queued by another instance is found by polling.
#[derive(Clone, Default)]
pub struct Wakeups {
    pub inbox: Arc<Notify>,
    pub outbox: Arc<Notify>,
}
