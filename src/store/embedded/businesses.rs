//! The embedded backend: the businesses role (see
//! [`crate::store::BusinessStore`]).

use super::*;
use crate::domain::BusinessId;
use crate::store::BusinessStore;

/// A page of a table keyed by contact, from after `cursor`: its keys and
/// the last one read (`None`: the table ended).
fn contacts_after<V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&'static str, V>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    let t = txn.open_table(table).map_err(corrupt)?;
    let range = match cursor {
        Some(c) => t.range::<&str>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)),
        None => t.range::<&str>(..),
    }
    .map_err(corrupt)?;
    let mut keys = Vec::new();
    for item in range.take(limit.max(1)) {
        let (k, _) = item.map_err(corrupt)?;
        keys.push(k.value().to_owned());
    }
    let last = (keys.len() >= limit.max(1))
        .then(|| keys.last().cloned())
        .flatten();
    Ok((keys, last))
}

#[async_trait]
impl BusinessStore for EmbeddedStore {
    async fn enlist(
        &self,
        business: &BusinessId,
        contacts: &[ContactKey],
    ) -> Result<(), StoreError> {
        let business = business.as_str().to_owned();
        let contacts: Vec<String> = contacts.iter().map(|c| c.as_str().to_owned()).collect();
        self.write(move |txn| {
            let mut t = txn.open_table(OWNERS).map_err(corrupt)?;
            for c in &contacts {
                if t.get(c.as_str()).map_err(corrupt)?.is_none() {
                    t.insert(c.as_str(), business.as_str()).map_err(corrupt)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn owner(&self, contact: &ContactKey) -> Result<Option<String>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(OWNERS).map_err(corrupt)?;
            Ok(t.get(key.as_str())
                .map_err(corrupt)?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn members(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Option<String>), StoreError> {
        let business = business.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let (keys, next) = contacts_after(&txn, OWNERS, cursor.as_deref(), limit)?;
            let t = txn.open_table(OWNERS).map_err(corrupt)?;
            let mut out = Vec::new();
            for k in keys {
                let theirs = t
                    .get(k.as_str())
                    .map_err(corrupt)?
                    .is_some_and(|v| v.value() == business);
                if theirs {
                    out.extend(ContactKey::parse(&k));
                }
            }
            Ok((out, next))
        })
        .await
    }

    async fn member_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(OWNERS).map_err(corrupt)?;
            let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
            for item in t.iter().map_err(corrupt)? {
                let (_, v) = item.map_err(corrupt)?;
                *totals.entry(v.value().to_owned()).or_default() += 1;
            }
            Ok(totals.into_iter().collect())
        })
        .await
    }

    async fn forget(&self, contact: &ContactKey) -> Result<(), StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            txn.open_table(OWNERS)
                .map_err(corrupt)?
                .remove(key.as_str())
                .map_err(corrupt)?;
            txn.open_table(OWNERS_STALE)
                .map_err(corrupt)?
                .remove(key.as_str())
                .map_err(corrupt)?;
            txn.open_table(SUPPRESSED)
                .map_err(corrupt)?
                .remove(key.as_str())
                .map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn adopt(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        // Two passes: the data keys (`k:` + the last key read), then the
        // suppression list (`s:` + the last key read).
        let cursor = cursor.unwrap_or_else(|| "k:".to_owned());
        let (pass, after) = cursor.split_once(':').unwrap_or(("k", ""));
        let after = (!after.is_empty()).then(|| after.to_owned());
        let suppressed = pass == "s";
        let (keys, last) = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(corrupt)?;
                if suppressed {
                    contacts_after(&txn, SUPPRESSED, after.as_deref(), limit)
                } else {
                    contacts_after(&txn, DATA_KEYS, after.as_deref(), limit)
                }
            })
            .await?;
        let next = match (suppressed, last) {
            (false, Some(l)) => Some(format!("k:{l}")),
            (false, None) => Some("s:".to_owned()),
            (true, Some(l)) => Some(format!("s:{l}")),
            (true, None) => None,
        };
        let business = business.as_str().to_owned();
        let given = self
            .write(move |txn| {
                let mut t = txn.open_table(OWNERS).map_err(corrupt)?;
                let mut given = 0;
                for k in &keys {
                    if t.get(k.as_str()).map_err(corrupt)?.is_none() {
                        t.insert(k.as_str(), business.as_str()).map_err(corrupt)?;
                        given += 1;
                    }
                }
                Ok(given)
            })
            .await?;
        Ok((given, next))
    }

    async fn prune_owners(
        &self,
        cursor: Option<String>,
        limit: usize,
        now: u64,
    ) -> Result<(u64, Option<String>), StoreError> {
        self.write(move |txn| {
            let (keys, next) = {
                let t = txn.open_table(OWNERS).map_err(corrupt)?;
                let range = match &cursor {
                    Some(c) => t.range::<&str>((
                        std::ops::Bound::Excluded(c.as_str()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => t.range::<&str>(..),
                }
                .map_err(corrupt)?;
                let mut keys = Vec::new();
                for item in range.take(limit.max(1)) {
                    keys.push(item.map_err(corrupt)?.0.value().to_owned());
                }
                let next = (keys.len() >= limit.max(1))
                    .then(|| keys.last().cloned())
                    .flatten();
                (keys, next)
            };
            let data_keys = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let suppressed = txn.open_table(SUPPRESSED).map_err(corrupt)?;
            let mut owners = txn.open_table(OWNERS).map_err(corrupt)?;
            let mut stale = txn.open_table(OWNERS_STALE).map_err(corrupt)?;
            let mut pruned = 0;
            for k in &keys {
                let keyed = data_keys
                    .get(k.as_str())
                    .map_err(corrupt)?
                    .is_some_and(|v| unexpired(v.value(), now).is_some());
                let kept = suppressed.get(k.as_str()).map_err(corrupt)?.is_some();
                if keyed || kept {
                    stale.remove(k.as_str()).map_err(corrupt)?;
                    continue;
                }
                let since = stale.get(k.as_str()).map_err(corrupt)?.map(|v| v.value());
                match since {
                    None => {
                        stale.insert(k.as_str(), now).map_err(corrupt)?;
                    }
                    Some(t) if now >= t + crate::store::PRUNE_GRACE => {
                        stale.remove(k.as_str()).map_err(corrupt)?;
                        owners.remove(k.as_str()).map_err(corrupt)?;
                        pruned += 1;
                    }
                    Some(_) => {}
                }
            }
            Ok((pruned, next))
        })
        .await
    }

    async fn adopted(&self) -> Result<bool, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(PINS).map_err(corrupt)?;
            Ok(t.get(crate::store::ADOPTED_PIN).map_err(corrupt)?.is_some())
        })
        .await
    }

    async fn removal(&self, business: &BusinessId) -> Result<Option<Vec<u8>>, StoreError> {
        let key = business.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(REMOVALS).map_err(corrupt)?;
            Ok(t.get(key.as_str())
                .map_err(corrupt)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_removal(&self, business: &BusinessId, record: &[u8]) -> Result<(), StoreError> {
        let (key, record) = (business.as_str().to_owned(), record.to_vec());
        self.write(move |txn| {
            txn.open_table(REMOVALS)
                .map_err(corrupt)?
                .insert(key.as_str(), record.as_slice())
                .map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn removals(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(REMOVALS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn drop_campaign(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |txn| drop_campaign(txn, &id)).await
    }

    async fn drop_marks(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        let business = business.as_str().to_owned();
        let (names, next) = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(corrupt)?;
                contacts_after(&txn, SEEN, cursor.as_deref(), limit)
            })
            .await?;
        self.write(move |txn| {
            let owners = txn.open_table(OWNERS).map_err(corrupt)?;
            let mut seen = txn.open_table(SEEN).map_err(corrupt)?;
            let mut expiry = txn.open_table(SEEN_EXPIRY).map_err(corrupt)?;
            let mut dropped = 0;
            for name in &names {
                // `c:<contact>/<dedup>` (an inbox) or `o:<contact>/…`.
                let contact = name
                    .split_once('/')
                    .and_then(|(q, _)| q.strip_prefix("c:").or_else(|| q.strip_prefix("o:")));
                let theirs = match contact {
                    Some(c) => owners
                        .get(c)
                        .map_err(corrupt)?
                        .is_some_and(|v| v.value() == business),
                    None => false,
                };
                if theirs {
                    let until = seen
                        .remove(name.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value());
                    if let Some(until) = until {
                        expiry.remove((until, name.as_str())).map_err(corrupt)?;
                    }
                    dropped += 1;
                }
            }
            Ok(dropped)
        })
        .await
        .map(|dropped| (dropped, next))
    }

    async fn drop_business(
        &self,
        _business: &BusinessId,
        _numbers: &[String],
    ) -> Result<(), StoreError> {
        // Counts are read from the owners table, and send rates live in
        // memory: nothing else is kept.
        Ok(())
    }
}
