//! The Redis backend: the keys role (see [`crate::store::KeyStore`]).

use super::scripts::{DataKeyArgs, DataKeyKeys, Keys, PinArgs, PinKeys, RewrapArgs, RewrapKeys};
use super::*;
use crate::store::KeyStore;

#[async_trait]
impl KeyStore for RedisStore {
    async fn pin(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let keys = PinKeys {
            pin: format!("{}{{meta}}:pin:{name}", self.prefix),
        };
        let mut inv = self.pin.prepare_invoke();
        keys.add_to(&mut inv);
        PinArgs { value }.args(&mut inv);
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    async fn data_key(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(self.contact_key(contact, "key")).await
    }

    async fn create_data_key(
        &self,
        contact: &ContactKey,
        wrapped: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, StoreError> {
        let keys = DataKeyKeys {
            data_key: self.contact_key(contact, "key"),
        };
        let args = DataKeyArgs {
            wrapped: &wrapped,
            ttl_s: ttl.as_secs().max(1),
        };
        let mut inv = self.data_key.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    async fn data_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(ContactKey, Vec<u8>)>, Option<String>), StoreError> {
        let (names, next) = self.scan_contacts("key", cursor, limit).await?;
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(names.len());
        if !names.is_empty() {
            // One GET each (a multi-key MGET would span Cluster slots).
            let mut pipe = redis::pipe();
            for name in &names {
                pipe.cmd("GET").arg(name);
            }
            let values: Vec<Option<Vec<u8>>> =
                pipe.query_async(&mut conn).await.map_err(unavailable)?;
            for (name, value) in names.iter().zip(values) {
                let contact = name
                    .rsplit_once(":c:")
                    .and_then(|(_, rest)| rest.strip_suffix(":key"))
                    .and_then(ContactKey::parse);
                if let (Some(c), Some(v)) = (contact, value) {
                    out.push((c, v));
                }
            }
        }
        Ok((out, next))
    }

    async fn replace_data_key(
        &self,
        contact: &ContactKey,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let keys = RewrapKeys {
            data_key: self.contact_key(contact, "key"),
            data_key_was: self.contact_key(contact, "key:was"),
        };
        let args = RewrapArgs {
            old,
            new,
            keep_s: crate::store::REWRAPPED_KEEP.as_secs(),
        };
        let mut inv = self.rewrap.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let done: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(done == 1)
    }
}
