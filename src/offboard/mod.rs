//! Taking a business off the system: its webhooks are discarded from the
//! first moment, then its campaigns, its contacts' de-duplication marks,
//! its contacts (every record and data key, under every id) and what is
//! kept about the business itself are deleted, and a deletion certificate
//! is written into the audit log.
//!
//! The removal record in the store says how far it got (phase and
//! cursor), so a removal cut short by a crash or a restart is finished by
//! the next start of any instance, and running it again once finished
//! changes nothing. Other businesses' records are never read for writing:
//! every step is keyed by the business's owner index.

pub mod removed;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::crypto::keyring::Keyring;
use crate::domain::BusinessId;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::campaign::CampaignStatus;
use crate::privacy::audit::Chain;
use crate::store::{Store, StoreError};

pub use removed::Removed;

/// How many records a step reads at a time.
const PAGE: usize = 200;

/// How long one instance holds a removal before another may carry it on
/// (each step renews it).
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The audit entry kind of a deletion certificate.
pub const CERTIFICATE: &str = "business_removed";

/// Where a removal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Its integration receivers are told (`business.removed`).
    Tell,
    Campaigns,
    Marks,
    Contacts,
    Business,
    Done,
}

/// How many records of each kind a removal deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Campaigns (definition, audience left, counters).
    pub campaigns: u64,
    /// De-duplication marks of its contacts' messages.
    pub dedup_marks: u64,
    /// Contacts: each one's data key, session, profile, history, consent
    /// ledger, queues, delivery records, windows, dead letters, campaign
    /// marks, suppression entry and owner record.
    pub contacts: u64,
    /// Other ids of those contacts (business-scoped user ids) and theirs.
    pub linked_ids: u64,
}

/// A business's removal, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub business: String,
    /// Its phone number ids when the removal began (its campaigns and
    /// send rates are found by them).
    pub numbers: Vec<String>,
    /// When it began and finished (Unix s).
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    pub phase: Phase,
    /// Where the current phase goes on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub deleted: Deleted,
    /// The integration receivers that took `business.removed`.
    #[serde(default)]
    pub told: Vec<String>,
}

impl Removal {
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The certificate's text: what and how much was deleted, when (JSON,
    /// no personal data).
    pub fn certificate(&self) -> String {
        serde_json::json!({
            "business": self.business,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "deleted": self.deleted,
            "receivers_told": self.told,
        })
        .to_string()
    }
}

/// What a removal needs.
pub struct Remover<'a> {
    pub store: &'a dyn Store,
    pub keyring: &'a Keyring,
    pub audit: &'a Chain,
    pub clock: &'a Clock,
    pub hooks: &'a crate::integrations::Hooks,
    /// Who asked: the admin (HTTP, command line) or the system (resuming).
    pub actor: Actor,
    /// Who asked (`root`, `operator:<id>`, `token:<id>`), for the
    /// certificate; `None` when resumed by an instance.
    pub by: Option<String>,
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("business removal record: {e}"))
}

/// The removal record of `business`, if any.
pub async fn removal(
    store: &dyn Store,
    business: &BusinessId,
) -> Result<Option<Removal>, StoreError> {
    store
        .removal(business)
        .await?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(corrupt))
        .transpose()
}

impl Remover<'_> {
    async fn save(&self, r: &Removal) -> Result<(), StoreError> {
        let id = BusinessId::parse(&r.business)
            .ok_or_else(|| StoreError::Corrupt("business removal record: id".into()))?;
        let bytes = serde_json::to_vec(r).map_err(corrupt)?;
        self.store.put_removal(&id, &bytes).await
    }

    /// Starts removing `business` (whose numbers are `numbers`), or
    /// answers its removal as recorded: from then on its webhooks are
    /// discarded by every instance that reads the record.
    pub async fn begin(
        &self,
        business: &BusinessId,
        numbers: &[String],
    ) -> Result<Removal, StoreError> {
        if let Some(r) = removal(self.store, business).await? {
            return Ok(r);
        }
        let r = Removal {
            business: business.as_str().to_owned(),
            numbers: numbers.to_vec(),
            started_at: self.clock.now(),
            finished_at: None,
            phase: Phase::Tell,
            cursor: None,
            deleted: Deleted::default(),
            told: Vec::new(),
        };
        self.save(&r).await?;
        tracing::info!(business = %business, "business removal started");
        Ok(r)
    }

    /// Carries a removal on to the end (nothing, when it is done): each
    /// step is saved as it finishes, so a crash resumes it where it was.
    /// While another instance is at it (it holds the removal's lease),
    /// answers the record as it is, not done.
    pub async fn finish(&self, mut r: Removal) -> Result<Removal, StoreError> {
        let business = BusinessId::parse(&r.business)
            .ok_or_else(|| StoreError::Corrupt("business removal record: id".into()))?;
        let lease = format!("removal-{business}");
        let holder = uuid::Uuid::new_v4().to_string();
        let mut first = true;
        loop {
            if !r.is_done() && !self.store.campaign_lease(&lease, &holder, LEASE).await? {
                tracing::info!(business = %business, "business removal: another instance is at it");
                return Ok(r);
            }
            if std::mem::take(&mut first) {
                // Held now: carry on from the record as stored (another
                // instance may have taken it further, or to the end).
                if let Some(stored) = removal(self.store, &business).await? {
                    r = stored;
                }
            }
            match r.phase {
                Phase::Tell => {
                    r.told = self.hooks.tell_removed(&r.business, self.clock.now()).await;
                    r.phase = Phase::Campaigns;
                }
                Phase::Campaigns => {
                    r.deleted.campaigns += self.campaigns(&r.numbers).await?;
                    // Its legal holds and disclosures go, before its
                    // contacts (whose data no hold keeps any longer).
                    crate::privacy::hold::drop_business(self.store, &business).await?;
                    r.phase = Phase::Marks;
                }
                Phase::Marks => {
                    let (n, next) = self
                        .store
                        .drop_marks(&business, r.cursor.take(), PAGE)
                        .await?;
                    r.deleted.dedup_marks += n;
                    match next {
                        Some(c) => r.cursor = Some(c),
                        None => r.phase = Phase::Contacts,
                    }
                }
                Phase::Contacts => {
                    let (page, next) = self.store.members(&business, r.cursor.take(), PAGE).await?;
                    for contact in &page {
                        let aliases = self
                            .store
                            .erase_contact(contact, &business, self.clock.now())
                            .await?;
                        for alias in &aliases {
                            self.store.forget(alias).await?;
                            self.keyring.forget(alias);
                        }
                        self.store.forget(contact).await?;
                        self.keyring.forget(contact);
                        r.deleted.contacts += 1;
                        r.deleted.linked_ids += aliases.len() as u64;
                    }
                    match next {
                        Some(c) => r.cursor = Some(c),
                        None => r.phase = Phase::Business,
                    }
                }
                Phase::Business => {
                    for number in &r.numbers {
                        self.store.close_breaker(Some(number)).await?;
                    }
                    self.store.drop_business(&business, &r.numbers).await?;
                    let waiting = crate::domain::waiting::kind(&business);
                    self.store.drop_docs(&waiting).await?;
                    // The privacy desk's requests of the business.
                    let desk = crate::domain::desk::kind(&business);
                    self.store.drop_docs(&desk).await?;
                    r.finished_at = Some(self.clock.now());
                    // The certificate before the record says done: a crash
                    // between the two writes it again, never loses it.
                    crate::privacy::audit::record(self.store, self.audit, self.certificate(&r))
                        .await?;
                    r.phase = Phase::Done;
                    tracing::info!(business = %business, "business removed");
                }
                Phase::Done => return Ok(r),
            }
            self.save(&r).await?;
        }
    }

    fn certificate(&self, r: &Removal) -> AuditEvent {
        AuditEvent {
            at: r.finished_at.unwrap_or(r.started_at),
            kind: CERTIFICATE.to_owned(),
            contact: None,
            actor: self.actor,
            detail: Some(r.certificate()),
            business: BusinessId::parse(&r.business).filter(|b| !b.is_default()),
            by: self.by.clone(),
        }
    }

    /// Cancels and deletes the campaigns sent from `numbers`; answers how
    /// many.
    async fn campaigns(&self, numbers: &[String]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for stored in self.store.campaigns().await? {
            let number = serde_json::from_slice::<serde_json::Value>(&stored.record)
                .ok()
                .and_then(|v| v["phone_number_id"].as_str().map(str::to_owned));
            if !number.is_some_and(|n| numbers.contains(&n)) {
                continue;
            }
            // Cancelled first, so no dispatcher sends from it meanwhile.
            self.store
                .set_campaign_status(
                    &stored.id,
                    &[
                        CampaignStatus::Scheduled,
                        CampaignStatus::Running,
                        CampaignStatus::Dispatched,
                    ],
                    CampaignStatus::Cancelled,
                )
                .await?;
            self.store.drop_campaign(&stored.id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// Finishes every removal a crash or a restart cut short.
pub async fn resume(remover: &Remover<'_>) -> Result<(), StoreError> {
    for (_, bytes) in remover.store.removals().await? {
        let r: Removal = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if !r.is_done() {
            tracing::info!(business = %r.business, "resuming a business removal");
            remover.finish(r).await?;
        }
    }
    Ok(())
}

/// Gives the `default` business the contacts an earlier release stored
/// (before the owner index existed), once per store.
pub async fn adopt_older_contacts(store: &dyn Store) -> Result<u64, StoreError> {
    if store.adopted().await? {
        return Ok(0);
    }
    let default = BusinessId::default_business();
    let (mut given, mut cursor) = (0, None);
    loop {
        let (n, next) = store.adopt(&default, cursor, PAGE).await?;
        given += n;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    store.pin(crate::store::ADOPTED_PIN, "1").await?;
    if given > 0 {
        tracing::info!(
            contacts = given,
            "contacts stored by an earlier release are the default business's"
        );
    }
    Ok(given)
}

/// What an instance does about businesses, in the background: adopts
/// older contacts once, then every [`removed::REFRESH`] reads the
/// removals (their webhooks are discarded) and carries on any removal not
/// finished whose lease is free (cut short by a crash or a restart).
pub async fn on_start(
    store: std::sync::Arc<dyn Store>,
    (keyring, audit): (Keyring, Chain),
    clock: Clock,
    hooks: crate::integrations::Hooks,
    removed: Removed,
    stop: crate::shutdown::Shutdown,
) {
    let weak = std::sync::Arc::downgrade(&store);
    if let Err(e) = adopt_older_contacts(store.as_ref()).await {
        tracing::error!(error = %e, "cannot give older contacts to the default business; retried at the next start");
    }
    drop(store);
    // Only a weak handle from here: the store closes when the server stops
    // (the embedded file is released).
    let mut first = true;
    while !stop.is_stopping() {
        if !first {
            stop.sleep(removed::REFRESH).await;
        }
        first = false;
        let Some(store) = weak.upgrade() else { return };
        if let Err(e) = removed.refresh(store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read the businesses' removals");
            continue;
        }
        // A removal cut short (here or on an instance that stopped) is
        // carried on by whoever gets its lease.
        if removed.unfinished() {
            let remover = Remover {
                store: store.as_ref(),
                keyring: &keyring,
                audit: &audit,
                clock: &clock,
                hooks: &hooks,
                actor: Actor::System,
                by: None,
            };
            if let Err(e) = resume(&remover).await {
                tracing::error!(error = %e, "a business removal could not be finished; retried soon");
            }
        }
    }
}

/// `whatsify business remove ID`: removes the business `id` with the
/// settings' store and keys, to the end (a removal on record is carried
/// on; one done is answered as it is).
pub async fn remove_now(
    settings: &crate::config::Settings,
    id: &str,
) -> Result<Removal, Box<dyn std::error::Error + Send + Sync>> {
    let business = BusinessId::parse(id).ok_or_else(|| format!("\"{id}\" is not a business id"))?;
    let secrets = crate::privacy::keys::load(settings)?;
    let store = crate::store::open(&settings.store).await?;
    crate::privacy::keys::check_store(store.as_ref(), &secrets).await?;
    let crypto = crate::privacy::keys::Crypto::new(&secrets);
    let (keyring, audit) = (crypto.keyring, crypto.audit);
    let clock = Clock::system();
    let hooks = crate::integrations::Hooks::new(settings.integrations.clone());
    let numbers = match settings.businesses.iter().find(|b| b.id == business) {
        Some(b) => b.phone_number_ids.clone(),
        None => match removal(store.as_ref(), &business).await? {
            Some(r) => r.numbers,
            None => return Err(format!("no business has the id \"{id}\"").into()),
        },
    };
    let remover = Remover {
        store: store.as_ref(),
        keyring: &keyring,
        audit: &audit,
        clock: &clock,
        hooks: &hooks,
        actor: Actor::Admin,
        by: Some("cli".to_owned()),
    };
    let mut now = remover.begin(&business, &numbers).await?;
    // A running instance may hold the removal's lease (it carries on what
    // it finds unfinished): wait for it, taking over if it stops.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        now = remover.finish(now).await?;
        if now.is_done() || std::time::Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        now = removal(store.as_ref(), &business).await?.unwrap_or(now);
    }
}
