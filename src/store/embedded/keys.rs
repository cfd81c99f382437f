//! The embedded backend: the keys role (see [`crate::store::KeyStore`]).

use super::*;
use crate::store::KeyStore;

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn pin(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |txn| {
            let mut t = txn.open_table(PINS).map_err(corrupt)?;
            if let Some(cur) = t.get(name.as_str()).map_err(corrupt)? {
                return Ok(cur.value().to_owned());
            }
            t.insert(name.as_str(), value.as_str()).map_err(corrupt)?;
            Ok(value)
        })
        .await
    }

    async fn data_key(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            read_data_key(&txn, &key)
        })
        .await
    }

    async fn create_data_key(
        &self,
        contact: &ContactKey,
        wrapped: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let now = now_secs();
            let stored = t
                .get(key.as_str())
                .map_err(corrupt)?
                .and_then(|v| unexpired(v.value(), now));
            if let Some(w) = stored {
                return Ok(w);
            }
            t.insert(
                key.as_str(),
                (now + ttl.as_secs().max(1), wrapped.as_slice()),
            )
            .map_err(corrupt)?;
            Ok(wrapped)
        })
        .await
    }

    async fn data_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(ContactKey, Vec<u8>)>, Option<String>), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let now = now_secs();
            let mut out = Vec::new();
            let mut last = None;
            let range = match &cursor {
                Some(c) => t.range::<&str>((
                    std::ops::Bound::Excluded(c.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => t.range::<&str>(..),
            }
            .map_err(corrupt)?;
            for item in range.take(limit.max(1)) {
                let (k, v) = item.map_err(corrupt)?;
                let (until, bytes) = v.value();
                last = Some(k.value().to_owned());
                if until > now
                    && let Some(c) = ContactKey::parse(k.value())
                {
                    out.push((c, bytes.to_vec()));
                }
            }
            Ok((out, last))
        })
        .await
    }

    async fn replace_data_key(
        &self,
        contact: &ContactKey,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let key = contact.as_str().to_owned();
        let (old, new) = (old.to_vec(), new.to_vec());
        self.write(move |txn| {
            let mut t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let until = match t.get(key.as_str()).map_err(corrupt)? {
                Some(v) if v.value().1 == old.as_slice() => v.value().0,
                _ => return Ok(false),
            };
            t.insert(key.as_str(), (until, new.as_slice()))
                .map_err(corrupt)?;
            txn.open_table(REWRAPPED)
                .map_err(corrupt)?
                .insert(
                    key.as_str(),
                    (
                        now_secs() + crate::store::REWRAPPED_KEEP.as_secs(),
                        old.as_slice(),
                    ),
                )
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }
}
