//! The campaign dispatcher: every instance runs one; one at a time holds a
//! campaign (a lease in the store) and moves its audience, at the
//! campaign's rate, into the contacts' outboxes.
//!
//! Each contact is checked right there (erased, marketing consent, an
//! address, the template's parameters) and either queued or counted as
//! skipped, atomically with the mark that it had its turn: after a crash
//! the next holder starts again from the front of what is left, and what
//! was done is not done twice. The senders check consent once more right
//! before each request.

use std::sync::Arc;
use std::time::Duration;

use super::{ContactValues, Member, member_context};
use crate::clock::Clock;
use crate::crypto::keyring::Keyring;
use crate::domain::ContactKey;
use crate::domain::campaign::{Campaign, CampaignStatus, Skip};
use crate::domain::consent::MARKETING;
use crate::domain::outbound::{Job, Message, Origin, Recipient};
use crate::privacy::consent;
use crate::store::{
    Brief, CampaignSend, Dispatched, EntryKey, Queue, Store, StoreError, StoredCampaign,
};

/// How long a dispatcher holds a campaign without renewing it.
const LEASE: Duration = Duration::from_secs(10);
/// How often campaigns are looked at: small steps, so a campaign's
/// messages reach the senders evenly rather than in bursts that replies
/// would queue behind.
const TICK: Duration = Duration::from_millis(20);
/// A campaign's rate limit lets this many ticks' worth through at once
/// (a late tick catches up instead of losing its share).
const BURST_TICKS: u32 = 2;
/// How often the number's pause and the campaign's backlog are read.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long the dispatcher sleeps when no campaign is under way (none
/// due, or every one held elsewhere), unless a campaign is created on
/// this instance: one created on another or come due starts within it,
/// and an idle instance does not ask the store fifty times a second.
const NONE_ACTIVE: Duration = Duration::from_secs(1);
/// The most contacts dispatched in one step.
const BATCH: u32 = 200;
/// However slow the campaign, this many of its messages may wait in the
/// outboxes (more: about two seconds' worth).
const MIN_BACKLOG: u32 = 20;

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub keyring: Keyring,
    pub clock: Clock,
    /// `privacy.retention_days`: how long a data key made here is kept.
    pub retention_days: u32,
    /// Hands queued contacts to this instance's senders.
    pub wake: crate::shutdown::Wakeups,
    /// This dispatcher's lease token.
    pub owner: String,
    /// `outbox.*` in force: campaigns share
    /// [`super::RATE_SHARE_PERCENT`] of `messages_per_second` per number.
    pub outbox: crate::config::Live<crate::config::OutboxSettings>,
    /// Per campaign: when its number's pause and backlog were last read,
    /// and whether it may go on.
    pub checked: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, bool)>>,
}

/// How many a rate allows per `ticks` ticks (at least one).
fn per_ticks(rate: u32, ticks: u32) -> u32 {
    let per_second = 1000 / TICK.as_millis().max(1) as u32;
    (rate.saturating_mul(ticks) / per_second.max(1)).clamp(1, BATCH)
}

/// What one dispatch step did: how many recipients it queued and skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub queued: usize,
    pub skipped: usize,
    /// Campaigns due that this instance holds.
    pub active: usize,
}

impl Dispatcher {
    /// Dispatches until `stop` is set.
    pub async fn run(self, stop: crate::shutdown::Shutdown) {
        while !stop.is_stopping() {
            match self.tick().await {
                Ok(step) if step.queued + step.skipped > 0 => {}
                Ok(step) if step.active == 0 => {
                    stop.idle(NONE_ACTIVE, &self.wake.campaigns).await;
                }
                Ok(_) => stop.sleep(TICK).await,
                Err(e) => {
                    tracing::warn!(error = %e, "campaigns: store unavailable; retrying");
                    stop.sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One step of every campaign due that this instance may hold.
    pub async fn tick(&self) -> Result<Progress, StoreError> {
        let now = self.clock.now();
        let mut total = Progress::default();
        for stored in self.store.active_campaigns().await? {
            let Ok(campaign) = serde_json::from_slice::<Campaign>(&stored.record) else {
                tracing::error!(campaign = %stored.id, "campaign record does not parse; skipped");
                continue;
            };
            if campaign.send_at > now {
                continue;
            }
            if !self
                .store
                .campaign_lease(&stored.id, &self.owner, LEASE)
                .await?
            {
                continue;
            }
            let step = self.step(&stored, &campaign).await?;
            total.active += 1;
            total.queued += step.queued;
            total.skipped += step.skipped;
        }
        Ok(total)
    }

    async fn step(&self, stored: &StoredCampaign, c: &Campaign) -> Result<Progress, StoreError> {
        if stored.status == CampaignStatus::Scheduled
            && self
                .store
                .set_campaign_status(&c.id, &[CampaignStatus::Scheduled], CampaignStatus::Running)
                .await?
        {
            tracing::info!(campaign = %c.id, targeted = c.targeted, "campaign started");
        }
        // Nothing is queued while the number is paused (Meta refused its
        // token), and no more than about two seconds' worth waits in the
        // outboxes: a backlog would compete with replies when sending
        // resumes.
        let rate = c.rate_per_second.max(1);
        if !self.may_go(c, rate).await? {
            return Ok(Progress::default());
        }
        let granted = self.slots(c, rate).await?;
        if granted == 0 {
            return Ok(Progress::default());
        }
        let entries = self
            .store
            .campaign_audience(&c.id, granted as usize)
            .await?;
        if entries.is_empty() {
            if self
                .store
                .set_campaign_status(
                    &c.id,
                    &[CampaignStatus::Running],
                    CampaignStatus::Dispatched,
                )
                .await?
            {
                tracing::info!(campaign = %c.id, "campaign dispatched");
            }
            return Ok(Progress::default());
        }
        let members = self.canonical(self.members(c, &entries)).await?;
        let contacts: Vec<ContactKey> = members.iter().flatten().map(|(k, _)| k.clone()).collect();
        let mut briefs = self.store.briefs(&contacts).await?.into_iter();
        let mut sends = Vec::with_capacity(contacts.len());
        for member in &members {
            let Some((contact, m)) = member else {
                tracing::error!(campaign = %c.id, "an audience entry names no contact; dropped");
                continue;
            };
            let brief = briefs.next().unwrap_or_default();
            let Some(m) = m else {
                tracing::error!(campaign = %c.id, contact = %contact, "an audience entry cannot be opened; skipped as unreadable");
                sends.push(CampaignSend {
                    contact: contact.clone(),
                    job: Err(Skip::Unreadable),
                    key: None,
                    ttl: crate::crypto::keyring::data_key_ttl(self.retention_days),
                });
                continue;
            };
            sends.push(self.prepare(c, contact, m, brief));
        }
        let mut step = Progress::default();
        // The batch's entries are dropped from the audience only once every
        // send is done; a send whose data key changed meanwhile (made by a
        // webhook, or the contact erased) is prepared again and retried.
        // What was done is not done again.
        for _ in 0..3 {
            let now_ms = self.clock.now() * 1000;
            let (done, _left) = self
                .store
                .campaign_dispatch(&c.id, &self.owner, sends.clone(), entries.len(), now_ms)
                .await?;
            let mut retry = Vec::new();
            for (send, d) in sends.into_iter().zip(done) {
                match d {
                    Dispatched::Done if send.job.is_ok() => {
                        step.queued += 1;
                        self.wake.outbox.push(send.contact);
                    }
                    Dispatched::Done => step.skipped += 1,
                    Dispatched::Already => {}
                    Dispatched::KeyMismatch => retry.push(send.contact),
                }
            }
            if retry.is_empty() {
                return Ok(step);
            }
            for k in &retry {
                self.keyring.forget(k);
            }
            let briefs = self.store.briefs(&retry).await?;
            sends = Vec::new();
            for (contact, brief) in retry.iter().zip(briefs) {
                if let Some((_, Some(m))) = members.iter().flatten().find(|(k, _)| k == contact) {
                    sends.push(self.prepare(c, contact, m, brief));
                }
            }
        }
        tracing::warn!(campaign = %c.id, contacts = sends.len(), "campaign: data keys kept changing; the batch is tried again at the next step");
        Ok(step)
    }

    /// How many of the campaign's audience may go now: the campaign's own
    /// rate, and the campaigns' share of the number.
    async fn slots(&self, c: &Campaign, rate: u32) -> Result<u32, StoreError> {
        let interval = 1_000_000 / u64::from(rate);
        let burst = per_ticks(rate, BURST_TICKS);
        let grant = self
            .store
            .take_rate(&format!("cmp:{}", c.id), interval, burst, BATCH)
            .await?;
        if grant.granted == 0 {
            return Ok(0);
        }
        let share = (self
            .outbox
            .get()
            .messages_per_second
            .saturating_mul(super::RATE_SHARE_PERCENT)
            / 100)
            .max(1);
        let number = self
            .store
            .take_rate(
                &format!("cmpn:{}", c.phone_number_id),
                1_000_000 / u64::from(share),
                per_ticks(share, BURST_TICKS),
                grant.granted,
            )
            .await?;
        Ok(number.granted)
    }

    /// The audience entries, each read as its contact and (when its
    /// sealed part opens) its member record.
    fn members(
        &self,
        c: &Campaign,
        entries: &[Vec<u8>],
    ) -> Vec<Option<(ContactKey, Option<Member>)>> {
        // `<contact key>|<sealed member>`. An entry whose sealed part does
        // not open (its master key is gone) is counted as `unreadable`
        // against the key it names.
        entries
            .iter()
            .map(|entry| {
                let bar = entry.iter().position(|b| *b == b'|')?;
                let key = ContactKey::parse(std::str::from_utf8(&entry[..bar]).ok()?)?;
                let member = self
                    .keyring
                    .open_system(&entry[bar + 1..], &member_context(&c.id))
                    .ok()
                    .and_then(|plain| serde_json::from_slice::<Member>(&plain).ok())
                    .filter(|m| m.contact == key.as_str());
                Some((key, member))
            })
            .collect()
    }

    /// Each member as their canonical contact: a number linked to a
    /// contact first seen by its business-scoped user id is that contact,
    /// with its consent and suppression (see [`crate::store::links`]).
    async fn canonical(
        &self,
        members: Vec<Option<(ContactKey, Option<Member>)>>,
    ) -> Result<Vec<Option<(ContactKey, Option<Member>)>>, StoreError> {
        let listed: Vec<ContactKey> = members.iter().flatten().map(|(k, _)| k.clone()).collect();
        let mut links = self
            .store
            .resolve_contacts(&listed)
            .await?
            .into_iter()
            .map(|r| r.link);
        Ok(members
            .into_iter()
            .map(|m| {
                m.map(|(k, member)| match links.next().flatten() {
                    Some(canonical) => (canonical, member),
                    None => (k, member),
                })
            })
            .collect())
    }

    /// Whether the campaign may queue more now: not while its number is
    /// paused (Meta refused the token), and not while more than about two
    /// seconds of it wait in the outboxes (a backlog would compete with
    /// replies when sending resumes). Read every [`CHECK_EVERY`].
    async fn may_go(&self, c: &Campaign, rate: u32) -> Result<bool, StoreError> {
        let cached = {
            let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            checked
                .get(&c.id)
                .filter(|(at, _)| at.elapsed() < CHECK_EVERY)
                .map(|(_, ok)| *ok)
        };
        if let Some(ok) = cached {
            return Ok(ok);
        }
        let paused = self
            .store
            .breakers()
            .await?
            .iter()
            .any(|(number, _)| *number == c.phone_number_id);
        let backlog = self
            .store
            .campaign_counts(&c.id)
            .await?
            .get("queued")
            .copied()
            .unwrap_or(0);
        let ok = !paused && backlog <= i64::from(rate.saturating_mul(2).max(MIN_BACKLOG));
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), (std::time::Instant::now(), ok));
        Ok(ok)
    }

    /// Decides one contact: the sealed job, or why it is skipped.
    fn prepare(
        &self,
        c: &Campaign,
        contact: &ContactKey,
        m: &Member,
        brief: Brief,
    ) -> CampaignSend {
        let ttl = crate::crypto::keyring::data_key_ttl(self.retention_days);
        let skip = |reason: Skip| CampaignSend {
            contact: contact.clone(),
            job: Err(reason),
            key: None,
            ttl,
        };
        if brief.suppressed.is_some() {
            return skip(Skip::Suppressed);
        }
        let known =
            brief.data_key.is_some() || brief.profile.is_some() || !brief.consent.is_empty();
        if let Some(reason) = consent::refusal(&brief.consent, MARKETING) {
            return skip(if known { reason.into() } else { Skip::Unknown });
        }
        // The contact's data key (made now if it has none: its consent is
        // on record, its other data expired).
        let (sealer, key) = match &brief.data_key {
            Some(wrapped) => match self.keyring.unwrap(contact, wrapped) {
                Ok(s) => (
                    s,
                    EntryKey {
                        wrapped: wrapped.clone(),
                        fresh: false,
                        ttl,
                    },
                ),
                Err(_) => {
                    tracing::error!(contact = %contact, "campaign: the contact's data key cannot be unwrapped; is every master key in force configured?");
                    return skip(Skip::KeyUnavailable);
                }
            },
            None => match self.keyring.new_data_key(contact) {
                Ok((s, wrapped)) => (
                    s,
                    EntryKey {
                        wrapped,
                        fresh: true,
                        ttl,
                    },
                ),
                Err(_) => return skip(Skip::KeyUnavailable),
            },
        };
        let profile: Option<crate::domain::profile::Profile> = brief
            .profile
            .as_deref()
            .and_then(|p| {
                sealer
                    .open(p, &crate::domain::profile::profile_context(contact))
                    .ok()
            })
            .and_then(|p| serde_json::from_slice(&p).ok());
        let conversation: Option<crate::domain::profile::Conversation> = brief
            .session
            .as_deref()
            .and_then(|s| {
                sealer
                    .open(s, &crate::domain::profile::session_context(contact))
                    .ok()
            })
            .and_then(|s| serde_json::from_slice(&s).ok());
        // The number given, else the one the contact last wrote from (the
        // profile's; a conversation's for contacts whose profile predates
        // it).
        let to: Option<Recipient> =
            m.to.clone()
                .or_else(|| profile.as_ref().and_then(|p| p.recipient.clone()))
                .or_else(|| conversation.as_ref().and_then(|c| c.recipient.clone()));
        let Some(to) = to else {
            return skip(Skip::Unknown);
        };
        let no_vars = std::collections::BTreeMap::new();
        let values = ContactValues {
            name: profile.as_ref().and_then(|p| p.contact.name.as_deref()),
            vars: &m.vars,
            session_vars: conversation
                .as_ref()
                .and_then(|c| c.session.as_ref())
                .map(|s| &s.vars)
                .unwrap_or(&no_vars),
        };
        let Some(template) = super::render(c, &values) else {
            return skip(Skip::MissingParameter);
        };
        let job = Job {
            id: format!("cmp.{}.{}", c.id, uuid::Uuid::new_v4().simple()),
            phone_number_id: c.phone_number_id.clone(),
            to,
            message: Message::CampaignTemplate { template },
            created_at: self.clock.now(),
            origin: Origin::Business,
            window_at: None,
            purpose: Some(MARKETING.to_owned()),
        };
        let sealed = serde_json::to_vec(&job).ok().and_then(|plain| {
            sealer
                .seal(&plain, Queue::Outbox(contact.clone()).name().as_bytes())
                .ok()
        });
        match sealed {
            Some(sealed) => CampaignSend {
                contact: contact.clone(),
                job: Ok(sealed),
                key: Some(key),
                ttl,
            },
            None => skip(Skip::KeyUnavailable),
        }
    }
}
