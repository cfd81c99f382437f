//! Short leases, kept alive while work is in flight.
//!
//! A worker's or sender's hold on a contact is a lease in the store of
//! [`LEASE`] (4 s). One [`Keeper`] per process renews the leases its
//! workers and senders hold every [`RENEW_EVERY`] (1 s), all at once (on
//! Redis one script per shard that has a long-held claim, in one round
//! trip): a claim done within a tick, which is almost every claim, costs
//! no renewal. When the process dies (`kill -9`), its leases lapse within
//! [`LEASE`], so the restarted process (or another instance) takes the
//! contacts over a few seconds later, not a minute later.
//!
//! A renewal is atomic and only by the holder (the token must match). A
//! holder whose lease could not be renewed (lost, or the store not
//! answering) learns it from its [`Hold`]: a sender starts no further
//! request under it, and the lease-token checks of commit, defer and
//! release refuse what it writes after another took over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Claim, Lane, Store};
use crate::domain::ContactKey;

/// How long a lease lasts without renewal: also how long the contacts of
/// a process that died wait before another takes them.
pub const LEASE: Duration = Duration::from_secs(4);
/// How often the keeper renews the leases held longer than half of this.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A sender starts a request under a lease only while at least this much
/// of it is confirmed left (normally about 3 s are).
pub const START_MARGIN: Duration = Duration::from_millis(1500);

/// A lease to renew: the lane, the contact and the holder's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub lane: Lane,
    pub contact: ContactKey,
    pub owner: String,
}

struct Entry {
    held: Held,
    /// When the lease was last taken or renewed (the time the command was
    /// sent: the store's expiry is at least this plus [`LEASE`]).
    confirmed: Instant,
    lost: Arc<AtomicBool>,
    /// `confirmed` as ms since the keeper's start, for the [`Hold`].
    confirmed_ms: Arc<AtomicU64>,
}

/// The leases this process holds, renewed by [`Keeper::run`].
#[derive(Clone)]
pub struct Keeper {
    inner: Arc<Mutex<HashMap<u64, Entry>>>,
    next: Arc<AtomicU64>,
    start: Instant,
}

impl Default for Keeper {
    fn default() -> Self {
        Keeper {
            inner: Default::default(),
            next: Default::default(),
            start: Instant::now(),
        }
    }
}

/// A claim the keeper keeps alive until this is dropped.
pub struct Hold {
    id: u64,
    keeper: Keeper,
    lost: Arc<AtomicBool>,
    confirmed_ms: Arc<AtomicU64>,
}

impl Hold {
    /// Whether the lease is known to be held for at least `margin` more:
    /// not lost, and confirmed recently enough.
    pub fn good_for(&self, margin: Duration) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return false;
        }
        let confirmed = Duration::from_millis(self.confirmed_ms.load(Ordering::SeqCst));
        let left = (confirmed + LEASE).saturating_sub(self.keeper.start.elapsed());
        left >= margin
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.keeper.lock().remove(&self.id);
    }
}

impl Keeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `claim`'s lease alive from now on; `taken` is when the claim
    /// command was sent.
    pub fn hold(&self, claim: &Claim, taken: Instant) -> Hold {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let lost = Arc::new(AtomicBool::new(false));
        let since = taken.saturating_duration_since(self.start).as_millis() as u64;
        let confirmed_ms = Arc::new(AtomicU64::new(since));
        self.lock().insert(
            id,
            Entry {
                held: Held {
                    lane: claim.lane,
                    contact: claim.contact.clone(),
                    owner: claim.owner.clone(),
                },
                confirmed: taken,
                lost: lost.clone(),
                confirmed_ms: confirmed_ms.clone(),
            },
        );
        Hold {
            id,
            keeper: self.clone(),
            lost,
            confirmed_ms,
        }
    }

    /// How many leases are held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renews, once, the leases held for more than half a tick. A store
    /// error leaves them as they were (they lapse unless a later tick
    /// renews them).
    pub async fn renew_once(&self, store: &dyn Store) {
        let due = RENEW_EVERY / 2;
        let now = Instant::now();
        let (ids, held): (Vec<u64>, Vec<Held>) = self
            .lock()
            .iter()
            .filter(|(_, e)| now.duration_since(e.confirmed) >= due)
            .map(|(id, e)| (*id, e.held.clone()))
            .unzip();
        if held.is_empty() {
            return;
        }
        let sent = Instant::now();
        match store.renew(&held, LEASE).await {
            Ok(kept) => {
                let mut map = self.lock();
                for (id, kept) in ids.into_iter().zip(kept) {
                    let Some(e) = map.get_mut(&id) else { continue };
                    if kept {
                        e.confirmed = sent;
                        let ms = sent.saturating_duration_since(self.start).as_millis() as u64;
                        e.confirmed_ms.store(ms, Ordering::SeqCst);
                    } else {
                        tracing::warn!(contact = %e.held.contact, lane = e.held.lane.name(), "lease lost");
                        e.lost.store(true, Ordering::SeqCst);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "leases not renewed"),
        }
    }

    /// Renews the leases held every [`RENEW_EVERY`], as long as the store
    /// is in use.
    pub async fn run(self, store: std::sync::Weak<dyn Store>) {
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { return };
            self.renew_once(store.as_ref()).await;
        }
    }
}
