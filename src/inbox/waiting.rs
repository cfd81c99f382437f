//! The agents' inbox index ([`crate::domain::waiting`]): its records
//! sealed under the master keys, changed only by compare-and-swap (an
//! agent taking a conversation and the worker noting the customer's
//! latest message cannot undo each other), and the worker's part: a
//! record when a flow hands a conversation off, the customer's latest
//! message while it waits, and its removal when the handoff closes.
//! Written after the step's commit: a crash in between leaves the index
//! behind the profile, which the next message of the customer mends, and
//! a listing drops an entry whose profile is no longer handed off.

use super::turn::Turn;
use super::*;
use crate::domain::BusinessId;
use crate::domain::waiting::{Waiting, kind};

/// How many times a change is tried against concurrent writers.
const TRIES: usize = 8;

/// What a change does to the record found (`None`: there is none).
pub enum Change {
    /// Writes this record.
    Put(Waiting),
    /// Removes the record.
    Drop,
    /// Leaves it as it is.
    Keep,
}

/// Seals `waiting` as the record of `contact` in `business`'s inbox.
pub fn seal(
    keyring: &Keyring,
    business: &BusinessId,
    contact: &str,
    waiting: &Waiting,
) -> Result<Vec<u8>, StoreError> {
    crate::store::seal_record(keyring, (&kind(business), contact), waiting)
}

/// Opens the record of `contact` in `business`'s inbox (`None`: it does
/// not open, e.g. sealed under a master key no longer configured).
pub fn open(
    keyring: &Keyring,
    business: &BusinessId,
    contact: &str,
    sealed: &[u8],
) -> Option<Waiting> {
    crate::store::open_record(keyring, (&kind(business), contact), sealed).ok()
}

/// Applies `change` to the record of `contact` in `business`'s inbox,
/// atomically against other writers (retried when one came first).
/// Answers the record as left (`None`: there is none).
pub async fn update(
    store: &dyn Store,
    keyring: &Keyring,
    (business, contact): (&BusinessId, &str),
    mut change: impl FnMut(Option<Waiting>) -> Change,
) -> Result<Option<Waiting>, StoreError> {
    let kind = kind(business);
    for _ in 0..TRIES {
        let stored = store.doc(&kind, contact).await?;
        let current = (stored.as_deref()).and_then(|s| open(keyring, business, contact, s));
        match change(current.clone()) {
            Change::Keep => return Ok(current),
            Change::Drop => {
                store.drop_doc(&kind, contact).await?;
                return Ok(None);
            }
            Change::Put(next) => {
                let sealed = seal(keyring, business, contact, &next)?;
                if store
                    .swap_doc(&kind, contact, stored.as_deref(), sealed)
                    .await?
                {
                    return Ok(Some(next));
                }
            }
        }
    }
    Err(StoreError::Corrupt(
        "the inbox record kept changing; try again".into(),
    ))
}

/// What a step did to the contact's handoff, for the index.
pub(super) enum Handoff {
    /// A flow handed the conversation off (at `since`).
    Started { since: u64, wrote: Option<u64> },
    /// A message went either way while it waits (the customer's at
    /// `wrote`, if they wrote).
    Moved { since: u64, wrote: Option<u64> },
    /// The agent closed it.
    Closed,
}

impl Worker {
    /// What the step did to the contact's handoff (`None`: nothing the
    /// index keeps), and the business it is of.
    pub(super) fn handoff_of(&self, turn: &Turn) -> Option<(BusinessId, Handoff)> {
        if turn.unreadable {
            return None;
        }
        let wrote = turn.window.as_ref().map(|(_, at)| *at);
        let change = match (
            turn.profile_before.handed_off_at,
            turn.profile.handed_off_at,
        ) {
            (None, Some(since)) => Handoff::Started {
                since,
                wrote: wrote.or(turn.state.last_inbound),
            },
            (Some(_), None) => Handoff::Closed,
            (Some(_), Some(since)) if !turn.history.is_empty() || !turn.jobs.is_empty() => {
                Handoff::Moved { since, wrote }
            }
            _ => return None,
        };
        let number = (turn.window.as_ref().map(|(n, _)| n.as_str()))
            .or(turn.state.phone_number_id.as_deref())
            .unwrap_or_default();
        Some((self.policies.for_number(number).business.clone(), change))
    }

    /// Keeps the index in step with a committed step. A failure is logged:
    /// the profile is the record, and the next step mends the index.
    pub(super) async fn note_handoff(
        &self,
        contact: &ContactKey,
        (business, handoff): (BusinessId, Handoff),
        now: u64,
    ) {
        let fresh = |since: u64, wrote: Option<u64>| Waiting {
            since,
            last_inbound: wrote,
            taken: None,
            last_activity: now,
        };
        let change = |found: Option<Waiting>| match &handoff {
            Handoff::Started { since, wrote } => Change::Put(fresh(*since, *wrote)),
            Handoff::Moved { since, wrote } => Change::Put(match found {
                Some(w) if w.since == *since => w.moved(*wrote, now),
                _ => fresh(*since, *wrote),
            }),
            Handoff::Closed => Change::Drop,
        };
        let at = (&business, contact.as_str());
        if let Err(e) = update(self.store.as_ref(), &self.keyring, at, change).await {
            tracing::warn!(contact = %contact, error = %e, "the agents' inbox was not updated");
        } else {
            tracing::debug!(contact = %contact, "agents' inbox updated");
        }
    }
}
