//! Walking the contacts' keys of one kind with SCAN, a page at a time, on
//! one Redis or on a Cluster.

use super::*;

impl RedisStore {
    /// A page of the names of contacts' keys that end in `:<suffix>`
    /// (`suffix` may hold a `*`), from `cursor` (`None`: the start);
    /// answers them and the cursor of the next page (`None`: done). A page
    /// may be empty while more follow.
    pub(super) async fn scan_contacts(
        &self,
        suffix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
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
        Ok(match &self.conn {
            Conn::Single(_) => {
                let start: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
                let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(start)
                    .arg("MATCH")
                    .arg(format!("{escaped}{{s:*}}:c:*:{suffix}"))
                    .arg("COUNT")
                    .arg(limit.max(10))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                (names, (next != 0).then(|| next.to_string()))
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
                    .arg(format!("{escaped}{{s:{shard}}}:c:*:{suffix}"))
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
                (names, next)
            }
        })
    }
}
