//! The lanes role: contacts taken one at a time by workers (inbox) and
//! senders (outbox): ready sets, timers, claims and leases.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ContactKey;
use crate::store::{Store, StoreError, StoredEntry, lease};

/// The two pipelines that take contacts one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Workers: inbox → engine → outbox.
    Inbox,
    /// Senders: outbox → Graph API.
    Outbox,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Inbox => "inbox",
            Lane::Outbox => "outbox",
        }
    }
}

/// A worker's exclusive hold on one contact, and what it needs to work:
/// the pending inbox entries (oldest first) and the sealed session.
#[derive(Debug, Clone)]
pub struct Claim {
    pub lane: Lane,
    pub contact: ContactKey,
    /// The lease token; only its holder may commit.
    pub owner: String,
    /// Pending entries of the lane's queue, oldest first.
    pub entries: Vec<StoredEntry>,
    /// The sealed session (inbox lane only).
    pub session: Option<Vec<u8>>,
    /// Outbox lane: the retry state of the queue's first job, as the last
    /// [`Store::defer`] wrote it (cleared when that job is finished).
    pub head: Option<Vec<u8>>,
    /// Inbox lane: the contact's sealed profile (outlives sessions).
    pub profile: Option<Vec<u8>>,
    /// The contact's wrapped data key, if it has one.
    pub data_key: Option<Vec<u8>>,
}

/// What a claim read besides its entries, as the backends read it.
pub(crate) struct ClaimRead {
    pub entries: Vec<StoredEntry>,
    /// The inbox session or the outbox head, by lane.
    pub state: Option<Vec<u8>>,
    pub profile: Option<Vec<u8>>,
    pub data_key: Option<Vec<u8>>,
}

impl Claim {
    /// The claim of `contact` in `lane` by `owner`, from what was read.
    pub(crate) fn of(lane: Lane, contact: &ContactKey, owner: &str, read: ClaimRead) -> Claim {
        let (session, head) = match lane {
            Lane::Inbox => (read.state, None),
            Lane::Outbox => (None, read.state),
        };
        Claim {
            lane,
            contact: contact.clone(),
            owner: owner.to_owned(),
            entries: read.entries,
            session,
            head,
            profile: read.profile,
            data_key: read.data_key,
        }
    }
}

/// Claims a worker or sender could not release because the store failed:
/// released as soon as it answers again (otherwise their contacts would
/// wait for their leases to expire).
#[derive(Default)]
pub struct Stranded(std::sync::Mutex<Vec<Claim>>);

impl Stranded {
    /// Keeps a claim to release later.
    pub fn keep(&self, claim: Claim) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(claim);
    }

    /// Releases the claims kept; those the store still refuses stay.
    pub async fn release_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = None;
        let mut left = Vec::new();
        for claim in kept {
            if failed.is_none() {
                match store.release(&claim).await {
                    Ok(()) => continue,
                    Err(e) => failed = Some(e),
                }
            }
            left.push(claim);
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(left);
        failed.map_or(Ok(()), Err)
    }
}

/// The two lanes that take contacts one at a time (workers and senders):
/// ready sets, timers, claims and their leases.
#[async_trait]
pub trait LaneStore: Send + Sync {
    /// Contacts whose inbox (or outbox) has, or may have, pending entries.
    async fn ready_contacts(&self, lane: Lane, limit: usize)
    -> Result<Vec<ContactKey>, StoreError>;

    /// What a sweep of `lane` finds: a sample of up to `limit` ready
    /// contacts, and up to `limit` contacts whose timer is due at `now`
    /// (as [`Store::ready_contacts`] and [`Store::due_timers`]).
    async fn sweep(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Vec<ContactKey>), StoreError> {
        Ok((
            self.ready_contacts(lane, limit).await?,
            self.due_timers(lane, now, limit).await?,
        ))
    }

    /// Takes the contact in `lane` unless another worker holds it there,
    /// and reads up to `limit` pending entries (and, for the inbox, the
    /// session). `None`: held elsewhere. A lease that is not released
    /// (a crash) expires after `lease`.
    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError>;

    /// Extends each lease of `held` that its holder still has to `lease`
    /// from now (atomically per lease, and only when the token matches);
    /// answers, in order, whether each was still held.
    async fn renew(&self, held: &[lease::Held], lease: Duration) -> Result<Vec<bool>, StoreError>;

    /// Contacts whose timer in `lane` is due at `now` (Unix seconds),
    /// earliest first: session timeouts (inbox) or deferred sends (outbox).
    async fn due_timers(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError>;

    /// How many contacts have pending entries in `lane` (for the outbox,
    /// ready or waiting to be retried), and since when (Unix ms) the oldest
    /// ready one has waited (for `GET /metrics`).
    async fn backlog(&self, lane: Lane) -> Result<(u64, Option<u64>), StoreError>;

    /// Releases a lease; in the outbox lane, also drops the contact from
    /// the ready set when its outbox is empty, and clears its outbox timer.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError>;
}
