//! The embedded backend: the contacts role (see [`crate::store::ContactStore`]).

use super::*;
use crate::store::ContactStore;

#[async_trait]
impl ContactStore for EmbeddedStore {
    async fn erase(
        &self,
        contact: &ContactKey,
        business: &BusinessId,
        at: u64,
    ) -> Result<(), StoreError> {
        let k = contact.as_str().to_owned();
        let counter = stats::scoped(Some(business), stats::ERASURES);
        self.write(move |txn| erase::erase(txn, &k, at, counter))
            .await?;
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|(_, key), _| key != contact.as_str());
        Ok(())
    }

    async fn purge_history(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
            let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
            // A held contact's history is kept whatever its age.
            let held = txn.open_table(holds::HELD).map_err(corrupt)?;
            let mut old = Vec::new();
            for item in age.range((0, "", 0)..(before_ms, "", 0)).map_err(corrupt)? {
                let (key, _) = item.map_err(corrupt)?;
                let (at, q, seq) = key.value();
                // History queues are named `h:<contact>`.
                if holds::is_held(&held, q.strip_prefix("h:").unwrap_or(q))? {
                    continue;
                }
                old.push((at, q.to_owned(), seq));
                if old.len() >= limit.saturating_mul(100) {
                    break;
                }
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
