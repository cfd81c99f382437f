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
        let mut conn = self.conn.clone();
        let escaped: String = self
            .prefix
            .chars()
            .flat_map(|c| {
                let special = matches!(c, '*' | '?' | '[' | ']' | '\\');
                special
                    .then_some('\\')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect();
        let (next, names): (Option<String>, Vec<String>) = match &self.conn {
            Conn::Single(_) => {
                let start: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
                let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(start)
                    .arg("MATCH")
                    .arg(format!("{escaped}{{s:*}}:c:*:key"))
                    .arg("COUNT")
                    .arg(limit.max(10))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                ((next != 0).then(|| next.to_string()), names)
            }
            Conn::Cluster(cluster) => {
                // SCAN walks one node: each shard in turn, on the node that
                // holds its slot (cursor `shard:cursor`).
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let (shard, at) = cursor
                    .as_deref()
                    .and_then(|c| c.split_once(':'))
                    .and_then(|(s, c)| Some((s.parse::<u16>().ok()?, c.parse::<u64>().ok()?)))
                    .unwrap_or((0, 0));
                let mut scan = redis::cmd("SCAN");
                scan.arg(at)
                    .arg("MATCH")
                    .arg(format!("{escaped}{{s:{shard}}}:c:*:key"))
                    .arg("COUNT")
                    .arg(limit.max(10));
                let route = Route::with_key(self.shard_key(shard, "scan"), SlotAddr::Master);
                let answer = cluster
                    .clone()
                    .route_command(
                        scan,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
                    .map_err(unavailable)?;
                let (n, names): (u64, Vec<String>) = redis::from_redis_value(answer)
                    .map_err(|e| StoreError::Corrupt(format!("SCAN answered: {e}")))?;
                let next = if n != 0 {
                    Some(format!("{shard}:{n}"))
                } else {
                    (shard + 1 < SHARDS).then(|| format!("{}:0", shard + 1))
                };
                (next, names)
            }
        };
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
