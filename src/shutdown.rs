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
    /// A campaign was created here: the dispatcher looks at once.
    pub campaigns: Arc<Notify>,
}

/// The most contacts a lane keeps in hand; beyond it a hint is dropped
/// (the contact stays marked ready in the store, and the sweep finds it).
const MAX_HINTS: usize = 100_000;

/// A contact taken from [`Hints::pop`]; work handed over for it while it
/// is held is queued again when this is dropped.
pub struct Taken {
    hints: Hints,
    pub contact: ContactKey,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.hints.done(&self.contact);
    }
}

/// One lane's contacts in hand, in order, each once.
#[derive(Clone, Default)]
pub struct Hints {
    inner: Arc<HintsInner>,
}

#[derive(Default)]
struct HintsInner {
    queue: Mutex<Queued>,
    notify: Notify,
    /// When the last sweep started (`None`: never), whether one was asked
    /// for once the hints are done, and how many sweeps in a row found
    /// nothing (an idle lane sweeps less and less often; see
    /// [`Hints::sweep_idle`]).
    swept: Mutex<Swept>,
}

#[derive(Default)]
struct Swept {
    last: Option<Instant>,
    asked: bool,
    empty: u32,
}

#[derive(Default)]
struct Queued {
    /// The contacts waiting, in order.
    order: VecDeque<ContactKey>,
    /// Each waiting contact, and whether its timer is due.
    waiting: HashMap<ContactKey, bool>,
    /// Contacts a task of this lane is working on, and whether more work
    /// was handed over for them meanwhile (they are queued again when the
    /// task is done, instead of being tried while held), and whether a
    /// timer came due meanwhile.
    active: HashMap<ContactKey, (bool, bool)>,
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
            if let Some((more, was_due)) = q.active.get_mut(&contact) {
                *more = true;
                *was_due |= due;
                return;
            }
            let full = q.order.len() >= MAX_HINTS;
            match q.waiting.get_mut(&contact) {
                Some(d) => *d |= due,
                None if !full => {
                    q.waiting.insert(contact.clone(), due);
                    q.order.push_back(contact);
                }
                None => return,
            }
        }
        self.inner.notify.notify_one();
    }

    /// Takes the next contact in hand (and whether its timer is due); it
    /// counts as worked on until the returned guard is dropped.
    pub fn pop(&self) -> Option<(Taken, bool)> {
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        let contact = q.order.pop_front()?;
        let due = q.waiting.remove(&contact).unwrap_or(false);
        q.active.insert(contact.clone(), (false, false));
        Some((
            Taken {
                hints: self.clone(),
                contact,
            },
            due,
        ))
    }

    fn done(&self, contact: &ContactKey) {
        let (more, due) = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.active.remove(contact).unwrap_or((false, false))
        };
        if more {
            self.add(contact.clone(), due);
        }
    }

    /// For a task with no hints: true for one caller when the last sweep
    /// is `every` old, or a sweep was asked for: that caller sweeps.
    pub fn sweep_due(&self, every: Duration) -> bool {
        self.take_sweep(every, true)
    }

    /// For a busy task: true for one caller when the last sweep is `every`
    /// old, whatever was asked for (so that hints never starve the sweep).
    pub fn sweep_overdue(&self, every: Duration) -> bool {
        self.take_sweep(every, false)
    }

    /// For a task with no hints, on a lane whose sweeps may find nothing
    /// for long: as [`Hints::sweep_due`], but each sweep in a row that
    /// found nothing doubles the interval from `every`, up to `most`
    /// (an idle instance does not keep asking the store; work this
    /// instance is handed wakes it at once all the same, and a sweep
    /// that finds something brings the interval back to `every`).
    pub fn sweep_idle(&self, every: Duration, most: Duration) -> bool {
        let empty = self.lock_swept().empty.min(16);
        let every = every.saturating_mul(1 << empty).min(most.max(every));
        self.take_sweep(every, true)
    }

    /// What the last sweep found (how many contacts), for
    /// [`Hints::sweep_idle`].
    pub fn swept(&self, found: usize) {
        let mut g = self.lock_swept();
        g.empty = if found == 0 {
            g.empty.saturating_add(1)
        } else {
            0
        };
    }

    fn lock_swept(&self) -> std::sync::MutexGuard<'_, Swept> {
        self.inner.swept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_sweep(&self, every: Duration, asked_counts: bool) -> bool {
        let mut g = self.lock_swept();
        if !(asked_counts && g.asked) && g.last.is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        g.last = Some(Instant::now());
        g.asked = false;
        true
    }

    /// Asks for a sweep once the hints are done (the last one found more
    /// than it could hand over, or deferred work was made due) and wakes
    /// an idle task for it.
    pub fn sweep_soon(&self) {
        self.lock_swept().asked = true;
        self.inner.notify.notify_one();
    }

    /// Waits for a hint, for `d` at most, or until the shutdown starts.
    pub async fn wait(&self, stop: &Shutdown, d: Duration) {
        stop.idle(d, &self.inner.notify).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ContactKey {
        ContactKey::from_hash(&[n; 16])
    }

    #[test]
    fn hints_come_out_in_order_once_and_remember_a_due_timer() {
        let h = Hints::default();
        h.push(key(1));
        h.push(key(2));
        h.push(key(1));
        h.push_due(key(2));
        let (a, due_a) = h.pop().expect("first");
        let (b, due_b) = h.pop().expect("second");
        assert_eq!((&a.contact, due_a), (&key(1), false));
        assert_eq!((&b.contact, due_b), (&key(2), true));
        assert!(h.pop().is_none(), "each contact once");
    }

    #[test]
    fn work_handed_over_for_a_held_contact_waits_until_it_is_released() {
        let h = Hints::default();
        h.push(key(3));
        let (held, _) = h.pop().expect("taken");
        h.push(key(3));
        assert!(h.pop().is_none(), "not tried while held");
        drop(held);
        let (again, _) = h.pop().expect("queued again once released");
        assert_eq!(again.contact, key(3));
        drop(again);
        assert!(h.pop().is_none(), "nothing more was handed over");
    }

    #[test]
    fn one_caller_sweeps_per_interval_unless_a_sweep_is_asked_for() {
        let h = Hints::default();
        assert!(h.sweep_due(Duration::from_secs(60)));
        assert!(!h.sweep_due(Duration::from_secs(60)));
        h.sweep_soon();
        // A busy task does not sweep for the asking; an idle one does.
        assert!(!h.sweep_overdue(Duration::from_secs(60)));
        assert!(h.sweep_due(Duration::from_secs(60)));
        assert!(!h.sweep_due(Duration::from_secs(60)));
        assert!(h.sweep_overdue(Duration::ZERO), "overdue: swept anyway");
    }

    #[test]
    fn an_idle_lane_sweeps_less_often_until_a_sweep_finds_work() {
        let h = Hints::default();
        let (every, most) = (Duration::from_millis(40), Duration::from_secs(3600));
        assert!(h.sweep_idle(every, most));
        for _ in 0..10 {
            h.swept(0);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.sweep_idle(every, most), "backed off: not yet");
        h.sweep_soon();
        assert!(h.sweep_idle(every, most), "asked for: at once");
        h.swept(3);
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            h.sweep_idle(every, most),
            "found work: the interval is back"
        );
        // Never longer than `most`.
        for _ in 0..40 {
            h.swept(0);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.sweep_idle(every, Duration::from_millis(50)));
    }
}
