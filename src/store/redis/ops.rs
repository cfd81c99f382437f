//! The Redis backend: the operations role (see [`crate::store::OpsStore`]).

use super::scripts::{HoldArgs, HoldKeys, Keys, ProbeArgs, ProbeKeys, RateArgs, RateKeys};
use super::*;
use crate::store::OpsStore;

#[async_trait]
impl OpsStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn stats(&self, days: &[String]) -> Result<crate::store::DailyStats, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        if days.is_empty() {
            return Ok(out);
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for day in days {
            for shard in 0..SHARDS {
                pipe.cmd("HGETALL").arg(self.stats_key(shard, day));
            }
        }
        let all: Vec<std::collections::HashMap<String, u64>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        for (i, counts) in all.into_iter().enumerate() {
            let day = &days[i / SHARDS as usize];
            let totals: &mut std::collections::BTreeMap<String, u64> =
                out.entry(day.clone()).or_default();
            for (name, n) in counts {
                *totals.entry(name).or_default() += n;
            }
        }
        out.retain(|_, v| !v.is_empty());
        Ok(out)
    }

    async fn take_rate(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
        want: u32,
    ) -> Result<RateGrant, StoreError> {
        let keys = RateKeys {
            rate: format!("{}rate:{key}", self.prefix),
        };
        let args = RateArgs {
            interval_us: interval_us.max(1),
            burst: burst.max(1),
            want: want.max(1),
        };
        let mut inv = self.rate.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let (granted, wait_ms): (u32, u64) =
            inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(RateGrant { granted, wait_ms })
    }

    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        let keys = HoldKeys {
            rate: format!("{}rate:{key}", self.prefix),
        };
        let mut inv = self.hold.prepare_invoke();
        keys.add_to(&mut inv);
        HoldArgs { hold_ms: ms }.args(&mut inv);
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = json(&breaker)?;
        let _: () = redis::pipe()
            .cmd("HSETNX")
            .arg(format!("{}breakers", self.prefix))
            .arg(number)
            .arg(json)
            .ignore()
            .cmd("HSETNX")
            .arg(format!("{}breakers:probe", self.prefix))
            .arg(number)
            .arg(breaker.probe_at)
            .ignore()
            .cmd("EXPIRE")
            .arg(format!("{}breakers", self.prefix))
            .arg(BREAKER_TTL)
            .ignore()
            .cmd("EXPIRE")
            .arg(format!("{}breakers:probe", self.prefix))
            .arg(BREAKER_TTL)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let keys = [
            format!("{}breakers", self.prefix),
            format!("{}breakers:probe", self.prefix),
        ];
        let mut pipe = redis::pipe();
        for k in &keys {
            match number {
                Some(n) => pipe.cmd("HDEL").arg(k).arg(n).ignore(),
                None => pipe.cmd("DEL").arg(k).ignore(),
            };
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        let mut conn = self.conn.clone();
        let (all, probes): (
            Vec<(String, String)>,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("HGETALL")
            .arg(format!("{}breakers", self.prefix))
            .cmd("HGETALL")
            .arg(format!("{}breakers:probe", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out: Vec<(String, Breaker)> = all
            .into_iter()
            .filter_map(|(n, json)| {
                let mut b: Breaker = serde_json::from_str(&json).ok()?;
                if let Some(p) = probes.get(&n) {
                    b.probe_at = *p;
                }
                Some((n, b))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn put_console_session(
        &self,
        key: &str,
        record: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let index = format!("{}console:sessions", self.prefix);
        redis::pipe()
            .cmd("SET")
            .arg(format!("{}console:{key}", self.prefix))
            .arg(record)
            .arg("EXAT")
            .arg(expires_at.max(1))
            .ignore()
            .cmd("SADD")
            .arg(&index)
            .arg(key)
            .ignore()
            .cmd("EXPIRE")
            .arg(&index)
            .arg(CONSOLE_INDEX_TTL)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn end_console_sessions(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let index = format!("{}console:sessions", self.prefix);
        let keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // One DEL each (the sessions' keys span Cluster slots), the index
        // last, so a failure midway leaves it to try again.
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("DEL")
                .arg(format!("{}console:{key}", self.prefix))
                .ignore();
        }
        pipe.cmd("SREM").arg(&index).arg(&keys).ignore();
        if keys.is_empty() {
            return Ok(());
        }
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn console_session(&self, key: &str, _now: u64) -> Result<Option<Vec<u8>>, StoreError> {
        // Redis drops the key at its time (SET … EXAT).
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{}console:{key}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn end_console_session(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("DEL")
            .arg(format!("{}console:{key}", self.prefix))
            .ignore()
            .cmd("SREM")
            .arg(format!("{}console:sessions", self.prefix))
            .arg(key)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError> {
        let keys = ProbeKeys {
            probe: format!("{}breakers:probe", self.prefix),
        };
        let args = ProbeArgs { number, now, next };
        let mut inv = self.probe.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let got: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(got == 1)
    }
}
