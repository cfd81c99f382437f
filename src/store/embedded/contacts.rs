//! The embedded backend: the contacts role (see [`crate::store::ContactStore`]).

use super::*;
use crate::domain::campaign::CampaignStatus;
use crate::store::ContactStore;

#[async_trait]
impl ContactStore for EmbeddedStore {
    async fn erase(&self, contact: &ContactKey, at: u64) -> Result<(), StoreError> {
        let k = contact.as_str().to_owned();
        self.write(move |txn| {
            let k = k.as_str();
            let after = format!("{k}\0");
            let c =
                ContactKey::parse(k).ok_or_else(|| StoreError::Corrupt("contact key".into()))?;
            // Queues and numbered logs: (name, seq) keys, and their counters.
            let inbox_q = Queue::Contact(c.clone()).name();
            let outbox_q = Queue::Outbox(c.clone()).name();
            {
                let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                for q in [&inbox_q, &outbox_q] {
                    inbox
                        .retain_in((q.as_str(), 0)..=(q.as_str(), u64::MAX), |_, _| false)
                        .map_err(corrupt)?;
                }
            }
            let history_q = format!("h:{k}");
            let consent_q = format!("k:{k}");
            let dead_q = format!("d:{k}");
            {
                let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
                let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
                let mut stamps = Vec::new();
                for item in history
                    .range((history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    let (key, value) = item.map_err(corrupt)?;
                    stamps.push((value.value().0, key.value().1));
                }
                for (at, seq) in stamps {
                    age.remove((at, history_q.as_str(), seq)).map_err(corrupt)?;
                }
                history
                    .retain_in(
                        (history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX),
                        |_, _| false,
                    )
                    .map_err(corrupt)?;
            }
            txn.open_table(CONSENT)
                .map_err(corrupt)?
                .retain_in(
                    (consent_q.as_str(), 0)..=(consent_q.as_str(), u64::MAX),
                    |_, _| false,
                )
                .map_err(corrupt)?;
            txn.open_table(DEAD)
                .map_err(corrupt)?
                .retain_in(
                    (dead_q.as_str(), 0)..=(dead_q.as_str(), u64::MAX),
                    |_, _| false,
                )
                .map_err(corrupt)?;
            {
                let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
                for q in [&inbox_q, &outbox_q, &history_q, &consent_q, &dead_q] {
                    seq.remove(q.as_str()).map_err(corrupt)?;
                }
            }
            // (contact, …) keys.
            txn.open_table(DELIVERIES)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            txn.open_table(WAMIDS)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            txn.open_table(WINDOWS)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            // A campaign job still queued will not go: it counts as skipped.
            {
                let now = now_secs();
                let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
                let mut queued = Vec::new();
                for item in marks
                    .range((k, "")..(after.as_str(), ""))
                    .map_err(corrupt)?
                {
                    let (key, value) = item.map_err(corrupt)?;
                    let (until, mark) = value.value();
                    if mark == MARK_QUEUED && until > now {
                        queued.push(key.value().1.to_owned());
                    }
                }
                let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
                for cid in &queued {
                    add_count(&mut counts, cid, "queued", -1).map_err(corrupt)?;
                    add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
                }
                marks
                    .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                    .map_err(corrupt)?;
                // Their entries in campaigns not dispatched yet (their
                // number, sealed) go too, by key: counted as skipped.
                let active: Vec<String> = {
                    let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
                    let mut ids = Vec::new();
                    for item in campaigns.iter().map_err(corrupt)? {
                        let (id, value) = item.map_err(corrupt)?;
                        if CampaignStatus::parse(value.value().1)
                            .is_some_and(CampaignStatus::is_active)
                        {
                            ids.push(id.value().to_owned());
                        }
                    }
                    ids
                };
                let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                for cid in &active {
                    if audience::unlist(&mut audience, &mut members, cid, k)? {
                        add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
                        add_count(&mut counts, cid, "dispatched", 1).map_err(corrupt)?;
                    }
                }
            }
            txn.open_table(LAST_CAMPAIGN)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            // Contact keys.
            txn.open_table(SESSIONS)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(PROFILES)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(DATA_KEYS)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(REWRAPPED)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(SESSION_EXPIRY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(OUTBOX_HEAD)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(DEAD_INDEX)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(READY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            set_timer(txn, TIMERS, TIMER_OF, k, None)?;
            set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, k, None)?;
            txn.open_table(SUPPRESSED)
                .map_err(corrupt)?
                .insert(k, at)
                .map_err(corrupt)?;
            count(txn, &[(stats::ERASURES.to_owned(), 1)])?;
            Ok(())
        })
        .await?;
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|(_, key), _| key != contact.as_str());
        Ok(())
    }

    async fn purge_history(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
            let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
            let mut old = Vec::new();
            for item in age
                .range((0, "", 0)..(before_ms, "", 0))
                .map_err(corrupt)?
                .take(limit.saturating_mul(100))
            {
                let (key, _) = item.map_err(corrupt)?;
                let (at, q, seq) = key.value();
                old.push((at, q.to_owned(), seq));
            }
            let mut contacts = std::collections::HashSet::new();
            for (at, q, seq) in &old {
                history.remove((q.as_str(), *seq)).map_err(corrupt)?;
                age.remove((*at, q.as_str(), *seq)).map_err(corrupt)?;
                contacts.insert(q.clone());
            }
            Ok(contacts.len())
        })
        .await
    }

    async fn append_consent(
        &self,
        contact: &ContactKey,
        change: ConsentChange,
    ) -> Result<(), StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            append_consent(txn, &key, std::slice::from_ref(&change))?;
            count(txn, &stats::with_consent(&[], std::iter::once(&change)))
        })
        .await
    }

    async fn suppressed(&self, contact: &ContactKey) -> Result<Option<u64>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(SUPPRESSED).map_err(corrupt)?;
            Ok(t.get(key.as_str()).map_err(corrupt)?.map(|v| v.value()))
        })
        .await
    }

    async fn session(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(SESSIONS).map_err(corrupt)?;
            Ok(table
                .get(key.as_str())
                .map_err(corrupt)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.history_range(contact, false, limit).await
    }

    async fn recent_history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = self.history_range(contact, true, limit).await?;
        out.reverse();
        Ok(out)
    }

    async fn profile(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            read_profile(&txn, &key)
        })
        .await
    }

    async fn deliveries(&self, contact: &ContactKey) -> Result<Vec<Delivery>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DELIVERIES).map_err(corrupt)?;
            let mut out: Vec<Delivery> = Vec::new();
            for item in t.range((key.as_str(), "")..).map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if k.value().0 != key {
                    break;
                }
                if let Ok(d) = serde_json::from_slice(v.value()) {
                    out.push(d);
                }
            }
            out.sort_by(|a, b| (a.at, &a.job).cmp(&(b.at, &b.job)));
            Ok(out)
        })
        .await
    }

    async fn consent(&self, contact: &ContactKey) -> Result<Vec<ConsentChange>, StoreError> {
        let q = format!("k:{contact}");
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(CONSENT).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t
                .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))
                .map_err(corrupt)?
            {
                let (_, v) = item.map_err(corrupt)?;
                if let Ok(c) = serde_json::from_slice(v.value()) {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn windows(&self, contact: &ContactKey) -> Result<Vec<(String, u64)>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(WINDOWS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t.range((key.as_str(), "")..).map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if k.value().0 != key {
                    break;
                }
                out.push((k.value().1.to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn resolve_contacts(
        &self,
        keys: &[ContactKey],
    ) -> Result<Vec<crate::store::Resolved>, StoreError> {
        self.resolve_links(keys).await
    }

    async fn link_contacts(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError> {
        self.add_links(links).await
    }

    async fn aliases(&self, canonical: &ContactKey) -> Result<Vec<ContactKey>, StoreError> {
        self.aliases_of(canonical).await
    }

    async fn unlink(&self, canonical: &ContactKey) -> Result<(), StoreError> {
        self.drop_links(canonical).await
    }
}
