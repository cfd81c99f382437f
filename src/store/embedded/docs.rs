//! The records role on the embedded store: the tables `docs`
//! ((kind, id) → record) and `once` ((kind, id) → until, Unix s).

use super::*;
use crate::store::DocStore;

pub(super) const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");
pub(super) const ONCE: TableDefinition<(&str, &str), u64> = TableDefinition::new("once");

pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DOCS).map_err(corrupt)?;
    txn.open_table(ONCE).map_err(corrupt)?;
    Ok(())
}

/// Forgets the marks of [`DocStore::use_once`] past their time.
pub(super) fn purge_once(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut t = txn.open_table(ONCE).map_err(corrupt)?;
    let old: Vec<(String, String)> = t
        .iter()
        .map_err(corrupt)?
        .filter_map(Result::ok)
        .filter(|(_, until)| until.value() <= now)
        .map(|(k, _)| (k.value().0.to_owned(), k.value().1.to_owned()))
        .collect();
    for (kind, id) in &old {
        t.remove((kind.as_str(), id.as_str())).map_err(corrupt)?;
    }
    Ok(old.len())
}

#[async_trait]
impl DocStore for EmbeddedStore {
    async fn put_doc(&self, kind: &str, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.write(move |txn| {
            let mut t = txn.open_table(DOCS).map_err(corrupt)?;
            t.insert((kind.as_str(), id.as_str()), record.as_slice())
                .map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DOCS).map_err(corrupt)?;
            Ok(t.get((kind.as_str(), id.as_str()))
                .map_err(corrupt)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn docs(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let kind = kind.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DOCS).map_err(corrupt)?;
            let end = format!("{kind}\0");
            let mut out = Vec::new();
            for item in t
                .range((kind.as_str(), "")..(end.as_str(), ""))
                .map_err(corrupt)?
            {
                let (k, v) = item.map_err(corrupt)?;
                out.push((k.value().1.to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn swap_doc(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&[u8]>,
        record: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        let expected = expected.map(<[u8]>::to_vec);
        self.write(move |txn| {
            let mut t = txn.open_table(DOCS).map_err(corrupt)?;
            let now = t
                .get((kind.as_str(), id.as_str()))
                .map_err(corrupt)?
                .map(|v| v.value().to_vec());
            if now != expected {
                return Ok(false);
            }
            t.insert((kind.as_str(), id.as_str()), record.as_slice())
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }

    async fn drop_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.write(move |txn| {
            let mut t = txn.open_table(DOCS).map_err(corrupt)?;
            Ok(t.remove((kind.as_str(), id.as_str()))
                .map_err(corrupt)?
                .is_some())
        })
        .await
    }

    async fn drop_docs(&self, kind: &str) -> Result<(), StoreError> {
        let kind = kind.to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(DOCS).map_err(corrupt)?;
            let end = format!("{kind}\0");
            let ids: Vec<String> = t
                .range((kind.as_str(), "")..(end.as_str(), ""))
                .map_err(corrupt)?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().1.to_owned())
                .collect();
            for id in &ids {
                t.remove((kind.as_str(), id.as_str())).map_err(corrupt)?;
            }
            Ok(())
        })
        .await
    }

    async fn use_once(&self, kind: &str, id: &str, until: u64) -> Result<bool, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        let now = now_secs();
        self.write(move |txn| {
            let mut t = txn.open_table(ONCE).map_err(corrupt)?;
            let live = t
                .get((kind.as_str(), id.as_str()))
                .map_err(corrupt)?
                .is_some_and(|v| v.value() > now);
            if live {
                return Ok(false);
            }
            t.insert((kind.as_str(), id.as_str()), until)
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }
}
