//! Graceful shutdown: one flag every loop checks, set on SIGTERM/SIGINT.
//! The webhook answers 503 from then on, workers and senders finish the
//! contact in hand and stop taking new ones; what is queued stays queued.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::domain::ContactKey;

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

/// Contacts this instance knows to have work, per lane: the webhook hands
/// the contacts it queued to the workers, and the workers hand the
/// contacts they queued replies for to the senders, with no round trip to
/// the store. Work queued by another instance, left by a crash, or come
/// due is found by the periodic sweep of the store (one task at a time).
#[derive(Clone, Default)]
pub struct Wakeups {
    pub inbox: Hints,
    pub outbox: Hints,
}

/// The most contacts a lane keeps in hand; beyond it a hint is dropped
/// (the contact stays marked ready in the store, and the sweep finds it).
const MAX_HINTS: usize = 100_000;

/// One lane's contacts in hand, in order, each once.
#[derive(Clone, Default)]
pub struct Hints {
    inner: Arc<HintsInner>,
}

#[derive(Default)]
struct HintsInner {
    /// The contacts in order, and for each whether its timer is due.
    queue: Mutex<(VecDeque<ContactKey>, HashMap<ContactKey, bool>)>,
    notify: Notify,
    /// When the last sweep started; `None`: sweep at the next chance.
    swept: Mutex<Option<Instant>>,
}

impl Hints {
    /// Hands over a contact with work and wakes an idle task.
    pub fn push(&self, contact: ContactKey) {
        self.add(contact, false);
    }

    /// Hands over a contact whose timer is due.
    pub fn push_due(&self, contact: ContactKey) {
        self.add(contact, true);
    }

    fn add(&self, contact: ContactKey, due: bool) {
        {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let (order, known) = &mut *q;
            match known.get_mut(&contact) {
                Some(d) => *d |= due,
                None if order.len() < MAX_HINTS => {
                    known.insert(contact.clone(), due);
                    order.push_back(contact);
                }
                None => return,
            }
        }
        self.inner.notify.notify_one();
    }

    /// The next contact in hand, and whether its timer is due.
    pub fn pop(&self) -> Option<(ContactKey, bool)> {
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (order, known) = &mut *q;
        let contact = order.pop_front()?;
        let due = known.remove(&contact).unwrap_or(false);
        Some((contact, due))
    }

    /// True for one caller when the last sweep is `every` old (or a sweep
    /// was asked for): that caller sweeps the store.
    pub fn sweep_due(&self, every: Duration) -> bool {
        let mut swept = self.inner.swept.lock().unwrap_or_else(|p| p.into_inner());
        if swept.is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        *swept = Some(Instant::now());
        true
    }

    /// Asks for a sweep at the next chance (the last one found work, or
    /// deferred work was made due) and wakes an idle task for it.
    pub fn sweep_soon(&self) {
        *self.inner.swept.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.notify.notify_one();
    }

    /// Waits for a hint, for `d` at most, or until the shutdown starts.
    pub async fn wait(&self, stop: &Shutdown, d: Duration) {
        stop.idle(d, &self.inner.notify).await;
    }
}
