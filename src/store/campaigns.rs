//! The campaigns role: campaign records, audiences, dispatch and counters.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::consent::ConsentChange;

use crate::domain::ContactKey;
use crate::domain::campaign::CampaignStatus;
use crate::store::{Delivery, DeliveryState, EntryKey, StoreError};

/// One audience member, as the campaign dispatcher hands it to the store.
#[derive(Debug, Clone)]
pub struct CampaignSend {
    pub contact: ContactKey,
    /// The sealed job to queue in the contact's outbox, or why the contact
    /// is skipped.
    pub job: Result<Vec<u8>, crate::domain::campaign::Skip>,
    /// With a job: the contact's data key it is sealed under. A fresh one
    /// is stored unless the contact has one; otherwise it must be the one
    /// stored, or nothing is done ([`Dispatched::KeyMismatch`]).
    pub key: Option<EntryKey>,
    /// How long the contact's campaign marks (and a fresh data key) are
    /// kept: as long as its data key.
    pub ttl: Duration,
}

/// What [`Store::campaign_dispatch`] did with one [`CampaignSend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// Queued (or counted as skipped) now.
    Done,
    /// This contact already had its turn in this campaign: nothing done.
    Already,
    /// Not done: the contact's data key changed (made elsewhere, or the
    /// contact was erased). Read it again and retry.
    KeyMismatch,
}

/// What the campaign dispatcher reads about an audience member.
#[derive(Debug, Clone, Default)]
pub struct Brief {
    pub data_key: Option<Vec<u8>>,
    pub profile: Option<Vec<u8>>,
    /// The sealed session (its variables), if a conversation is under way.
    pub session: Option<Vec<u8>>,
    pub consent: Vec<ConsentChange>,
    pub suppressed: Option<u64>,
}

/// A campaign as stored: its definition (JSON, see
/// [`crate::domain::campaign::Campaign`]) and its status, kept apart so a status
/// change is a compare-and-set.
#[derive(Debug, Clone)]
pub struct StoredCampaign {
    pub id: String,
    pub record: Vec<u8>,
    pub status: CampaignStatus,
}

/// How a campaign's audience entry starts: the contact's pseudonymous key
/// and `|`, then the sealed entry. Both backends index the audience by
/// that key, so an erasure removes the contact's entry from each campaign
/// not dispatched yet without reading the audience; a contact is in an
/// audience once (a later entry of the same contact is not stored).
pub fn audience_prefix(contact: &ContactKey) -> Vec<u8> {
    format!("{contact}|").into_bytes()
}

/// How campaign jobs are named (`cmp.<campaign id>.<n>`): the store reads
/// the campaign from a delivery record's job id to count its progress.
pub fn campaign_of_job(job: &str) -> Option<&str> {
    let rest = job.strip_prefix("cmp.")?;
    let (id, _) = rest.split_once('.')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// How long a campaign's counters and its contacts' marks are kept after
/// their last change.
pub const CAMPAIGN_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// The campaign counters a delivery record's change moves (the same rules
/// as the Redis store's Lua `tally`): the first record of a queued job
/// takes it off `queued`; reaching accepted, delivered and read counts
/// `sent`, `delivered` and `read` once each; a final state counts
/// `skipped:<reason>` (consent missing at the moment of sending),
/// `cancelled`, or `failed:<code>` (`failed:<state>` with no code).
pub fn campaign_tally(old: Option<&Delivery>, new: &Delivery) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let old_rank = old.map(|d| d.state.rank()).unwrap_or(0);
    let new_rank = new.state.rank();
    if old.is_none() {
        out.push(("queued".to_owned(), -1));
    }
    if new_rank >= 10 {
        let field = match new.state {
            DeliveryState::NoConsent => {
                format!("skipped:{}", new.reason.as_deref().unwrap_or("no_consent"))
            }
            DeliveryState::Cancelled => "cancelled".to_owned(),
            other => match new.code {
                Some(code) => format!("failed:{code}"),
                None => format!("failed:{}", other.name()),
            },
        };
        out.push((field, 1));
    } else {
        for (threshold, name) in [(1, "sent"), (3, "delivered"), (4, "read")] {
            if old_rank < threshold && new_rank >= threshold {
                out.push((name.to_owned(), 1));
            }
        }
    }
    out
}

/// Campaigns: their records and statuses, audiences, dispatch and
/// counters.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a new campaign (status `scheduled`) and its audience, in
    /// order: sealed entries the dispatcher takes from the front.
    async fn create_campaign(
        &self,
        id: &str,
        record: &[u8],
        audience: Vec<Vec<u8>>,
    ) -> Result<(), StoreError>;

    /// Every campaign, oldest first.
    async fn campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError>;

    /// The campaigns still to dispatch (`scheduled` or `running`), oldest
    /// first: what the dispatchers look at several times a second.
    async fn active_campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError> {
        Ok(self
            .campaigns()
            .await?
            .into_iter()
            .filter(|c| c.status.is_active())
            .collect())
    }

    /// One campaign.
    async fn campaign(&self, id: &str) -> Result<Option<StoredCampaign>, StoreError>;

    /// Moves a campaign's status to `to` if it is one of `from`; answers
    /// whether it did. Moving to `cancelled` drops what is left of the
    /// audience.
    async fn set_campaign_status(
        &self,
        id: &str,
        from: &[CampaignStatus],
        to: CampaignStatus,
    ) -> Result<bool, StoreError>;

    /// Takes (or keeps) the right to dispatch a campaign for `lease`:
    /// true for one owner at a time.
    async fn campaign_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` audience entries from the front of what is left.
    async fn campaign_audience(&self, id: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Queues each job (or counts each skip) unless the contact already had
    /// its turn in this campaign, each atomically with that mark and the
    /// campaign's counters (`dispatched`, and `queued` or
    /// `skipped:<reason>`); then drops the first `consumed` audience
    /// entries, unless a send came back [`Dispatched::KeyMismatch`] or
    /// `owner` no longer holds the campaign's lease (a dispatcher that
    /// stalled past it drops nothing: the next holder read the same
    /// entries, and drops them itself). Answers, in order, what was done,
    /// and how many entries are left.
    async fn campaign_dispatch(
        &self,
        id: &str,
        owner: &str,
        sends: Vec<CampaignSend>,
        consumed: usize,
        now_ms: u64,
    ) -> Result<(Vec<Dispatched>, u64), StoreError>;

    /// The audience entries left to dispatch.
    async fn campaign_left(&self, id: &str) -> Result<u64, StoreError>;

    /// A campaign's counters, summed over the store (see
    /// [`campaign_tally`], plus `queued`, `skipped:<reason>` and
    /// `opt_outs`).
    async fn campaign_counts(
        &self,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError>;

    /// What the dispatcher needs about each contact, in order.
    async fn briefs(&self, contacts: &[ContactKey]) -> Result<Vec<Brief>, StoreError>;
}

#[cfg(test)]
mod merge_tests {
    use super::{Delivery, DeliveryState, campaign_tally};
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = DeliveryState> {
        prop::sample::select(DeliveryState::ALL.to_vec())
    }

    fn update(state: DeliveryState, at: u64) -> Delivery {
        Delivery {
            job: "cmp.c1.j".into(),
            state,
            at,
            wamid: None,
            kind: None,
            code: (state == DeliveryState::Failed).then_some(131_026),
            reason: None,
            attempts: None,
        }
    }

    proptest! {
        /// Status updates in any order and with any repeats: a record's
        /// state only moves forward, a final state never changes, the end
        /// state is the first final one (else the furthest), and the
        /// campaign counters count each milestone at most once.
        #[test]
        fn status_updates_are_monotonic(states in prop::collection::vec(state(), 1..12)) {
            let mut stored: Option<Delivery> = None;
            let mut counted: std::collections::BTreeMap<String, i64> = Default::default();
            for (i, s) in states.iter().enumerate() {
                let u = update(*s, i as u64);
                let before = stored.clone();
                let changed = match stored.as_mut() {
                    None => {
                        stored = Some(u.clone());
                        true
                    }
                    Some(d) => d.merge(&u),
                };
                if changed {
                    for (name, n) in campaign_tally(before.as_ref(), &u) {
                        *counted.entry(name).or_default() += n;
                    }
                }
                let now = stored.as_ref().map(|d| d.state).unwrap_or(*s);
                if let Some(b) = &before {
                    prop_assert!(now.rank() >= b.state.rank());
                    if b.state.is_final() {
                        prop_assert_eq!(now, b.state);
                    }
                }
            }
            let end = stored.map(|d| d.state);
            let first_final = states.iter().find(|s| s.is_final()).copied();
            let expected = first_final.or_else(|| states.iter().max_by_key(|s| s.rank()).copied());
            prop_assert_eq!(end, expected);
            prop_assert_eq!(counted.get("queued").copied(), Some(-1));
            for milestone in ["sent", "delivered", "read"] {
                prop_assert!(counted.get(milestone).copied().unwrap_or(0) <= 1);
            }
            let finals: i64 = counted
                .iter()
                .filter(|(k, _)| k.starts_with("failed:") || k.starts_with("skipped:") || *k == "cancelled")
                .map(|(_, v)| *v)
                .sum();
            prop_assert!(finals <= 1);
        }
    }
}
