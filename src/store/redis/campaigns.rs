//! The Redis backend: the campaigns role (see [`crate::store::CampaignStore`]).

use super::scripts::{
    DispatchArgs, DispatchKeys, Keys, LeaseArgs, LeaseKeys, StatusArgs, StatusKeys,
};
use super::*;
use crate::domain::campaign::CampaignStatus;
use crate::store::CampaignStore;

#[async_trait]
impl CampaignStore for RedisStore {
    async fn create_campaign(
        &self,
        id: &str,
        record: &[u8],
        audience: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let hash = self.campaign_key(id, "");
        let keys = self.audience_keys(id);
        let mut conn = self.conn.clone();
        // The audience first (in chunks), then the record: a campaign is
        // visible only once its audience is stored. Until the record is
        // written the audience lives an hour: what a crash in between
        // leaves goes by itself.
        super::audience::add(&mut conn, &keys, &audience, 3600).await?;
        let index = format!("{}{{cmp}}:index", self.prefix);
        // The record and the audience's full life together (one slot).
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSET")
            .arg(&hash)
            .arg("record")
            .arg(record)
            .arg("status")
            .arg(CampaignStatus::Scheduled.as_str())
            .ignore();
        pipe.cmd("EXPIRE").arg(&hash).arg(CAMPAIGN_TTL_S).ignore();
        for key in &keys[..2] {
            pipe.cmd("EXPIRE").arg(key).arg(CAMPAIGN_TTL_S).ignore();
        }
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let active = format!("{}{{cmp}}:active", self.prefix);
        let mut pipe = redis::pipe();
        for key in [&index, &active] {
            pipe.cmd("ZADD")
                .arg(key)
                .arg(crate::clock::now_ms())
                .arg(id)
                .ignore();
            pipe.cmd("EXPIRE").arg(key).arg(CAMPAIGN_TTL_S).ignore();
        }
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn campaigns(&self) -> Result<Vec<crate::store::StoredCampaign>, StoreError> {
        self.indexed_campaigns("index", |_| true).await
    }

    async fn campaign(&self, id: &str) -> Result<Option<crate::store::StoredCampaign>, StoreError> {
        let mut conn = self.conn.clone();
        let row: (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(self.campaign_key(id, ""))
            .arg("record")
            .arg("status")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match row {
            (Some(record), Some(status)) => Some(crate::store::StoredCampaign {
                id: id.to_owned(),
                record,
                status: status_of(&status)?,
            }),
            _ => None,
        })
    }

    async fn set_campaign_status(
        &self,
        id: &str,
        from: &[CampaignStatus],
        to: CampaignStatus,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let [queue, members, old_list] = self.audience_keys(id);
        let keys = StatusKeys {
            campaign: self.campaign_key(id, ""),
            queue,
            members,
            old_list,
        };
        let args = StatusArgs {
            to: to.as_str(),
            from: from.iter().map(|f| f.as_str()).collect(),
        };
        let mut inv = self.status.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let moved: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if moved == 1 && !to.is_active() {
            let () = redis::cmd("ZREM")
                .arg(format!("{}{{cmp}}:active", self.prefix))
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(moved == 1)
    }

    async fn active_campaigns(&self) -> Result<Vec<crate::store::StoredCampaign>, StoreError> {
        self.indexed_campaigns("active", CampaignStatus::is_active)
            .await
    }

    async fn campaign_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let keys = LeaseKeys {
            lease: self.campaign_key(id, ":lease"),
        };
        let args = LeaseArgs {
            owner,
            lease_ms: lease.as_millis() as u64,
        };
        let mut inv = self.lease.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let mut conn = self.conn.clone();
        let held: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn campaign_audience(&self, id: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        super::audience::read(&mut conn, &self.audience_keys(id), limit).await
    }

    async fn campaign_dispatch(
        &self,
        id: &str,
        owner: &str,
        sends: Vec<crate::store::CampaignSend>,
        consumed: usize,
        now_ms: u64,
    ) -> Result<(Vec<crate::store::Dispatched>, u64), StoreError> {
        let values: Vec<i64> = if sends.is_empty() {
            Vec::new()
        } else {
            self.pipeline(|| {
                let mut pipe = redis::pipe();
                for send in &sends {
                    let c = &send.contact;
                    let shard = shard_of(c);
                    let keys = DispatchKeys {
                        campaigns: self.contact_key(c, "cmp"),
                        data_key: self.contact_key(c, "key"),
                        outbox: self.contact_key(c, "outbox"),
                        outbox_ready: self.ready_key(Lane::Outbox, shard),
                        counters: self.shard_key(shard, &format!("cmp:{id}")),
                    };
                    let (job, reason): (&[u8], &str) = match &send.job {
                        Ok(job) => (job, ""),
                        Err(reason) => (b"", reason.as_str()),
                    };
                    let (wrapped, fresh) = match &send.key {
                        Some(k) => (&k.wrapped[..], k.fresh),
                        None => (&b""[..], false),
                    };
                    let args = DispatchArgs {
                        campaign: id,
                        job,
                        reason,
                        data_key: wrapped,
                        fresh_key: fresh,
                        key_ttl: send.ttl.as_secs().max(1),
                        now_ms,
                        contact: c.as_str(),
                        campaign_ttl: CAMPAIGN_TTL_S,
                    };
                    args.args(Self::evalsha(&mut pipe, &self.dispatch, &keys.keys()));
                }
                pipe
            })
            .await?
        };
        let done: Vec<crate::store::Dispatched> = values
            .iter()
            .map(|v| match v {
                1 => crate::store::Dispatched::Done,
                0 => crate::store::Dispatched::Already,
                _ => crate::store::Dispatched::KeyMismatch,
            })
            .collect();
        let mut conn = self.conn.clone();
        let trim = consumed > 0 && !done.contains(&crate::store::Dispatched::KeyMismatch);
        let left = super::audience::trim(
            &mut conn,
            &self.audience_keys(id),
            &self.campaign_key(id, ":lease"),
            owner,
            if trim { consumed } else { 0 },
        )
        .await?;
        Ok((done, left))
    }

    async fn campaign_left(&self, id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        super::audience::left(&mut conn, &self.audience_keys(id)).await
    }

    async fn campaign_counts(
        &self,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let per_shard: Vec<Vec<(String, i64)>> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                for shard in 0..SHARDS {
                    pipe.cmd("HGETALL")
                        .arg(self.shard_key(shard, &format!("cmp:{id}")));
                }
                pipe
            })
            .await?;
        let mut out = std::collections::BTreeMap::new();
        for (name, n) in per_shard.into_iter().flatten() {
            *out.entry(name).or_insert(0) += n;
        }
        Ok(out)
    }

    async fn briefs(
        &self,
        contacts: &[ContactKey],
    ) -> Result<Vec<crate::store::Brief>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        type Row = (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            redis::streams::StreamRangeReply,
            Option<u64>,
        );
        let suppressed = format!("{}{{suppressed}}", self.prefix);
        let mut pipe = redis::pipe();
        for c in contacts {
            pipe.cmd("GET").arg(self.contact_key(c, "key"));
            pipe.cmd("GET").arg(self.contact_key(c, "profile"));
            pipe.cmd("GET").arg(self.contact_key(c, "session"));
            pipe.cmd("XRANGE")
                .arg(self.contact_key(c, "consent"))
                .arg("-")
                .arg("+");
            pipe.cmd("HGET").arg(&suppressed).arg(c.as_str());
        }
        let mut conn = self.conn.clone();
        let flat: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(contacts.len());
        for row in flat.chunks(5) {
            let row: Row = redis::FromRedisValue::from_redis_value(Value::Array(row.to_vec()))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let (data_key, profile, session, ledger, suppressed) = row;
            let consent = ledger
                .ids
                .iter()
                .filter_map(|sid| match sid.map.get("c") {
                    Some(Value::BulkString(b)) => serde_json::from_slice(b).ok(),
                    _ => None,
                })
                .collect();
            out.push(crate::store::Brief {
                data_key,
                profile,
                session,
                consent,
                suppressed,
            });
        }
        Ok(out)
    }
}
