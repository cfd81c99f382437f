//! The Redis backend: the inbox role (see [`crate::store::InboxStore`]).

use super::scripts::{AppendArgs, AppendKeys, CommitArgs, CommitKeys, Keys};
use super::*;
use crate::store::InboxStore;

#[async_trait]
impl InboxStore for RedisStore {
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError> {
        self.append_with(entries, &[]).await
    }

    async fn append_linked(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError> {
        self.append_with(entries, links).await
    }

    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.stream_key(queue))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        entries_of(reply)
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let mut conn = self.conn.clone();
        let c = &claim.contact;
        let shard = shard_of(c);
        let keys = CommitKeys {
            lease: self.lease_key(Lane::Inbox, c),
            inbox: self.contact_key(c, "inbox"),
            session: self.contact_key(c, "session"),
            outbox: self.contact_key(c, "outbox"),
            window: self.contact_key(c, "window"),
            deliveries: self.contact_key(c, "deliveries"),
            consent: self.contact_key(c, "consent"),
            inbox_ready: self.ready_key(Lane::Inbox, shard),
            outbox_ready: self.ready_key(Lane::Outbox, shard),
            timers: self.timers_key(Lane::Inbox, shard),
            profile: self.contact_key(c, "profile"),
            history: self.contact_key(c, "history"),
            history_index: self.shard_key(shard, "history"),
            stats: self.stats_key(shard, &stats::today()),
            data_key: self.contact_key(c, "key"),
            campaign_prefix: self.shard_key(shard, "cmp:"),
            campaigns: self.contact_key(c, "cmp"),
            last_campaign: self.contact_key(c, "lastcmp"),
        };
        let counts = stats::with_consent(&commit.stats, commit.consent.iter());
        let args = CommitArgs {
            token: &claim.owner,
            session_ttl: commit.session_ttl.as_secs().max(1),
            session: commit.session.as_deref(),
            acked: &commit.acked,
            jobs: &commit.outbox,
            window: commit.window.clone().unwrap_or_default(),
            deliveries: commit
                .deliveries
                .iter()
                .map(record_args)
                .collect::<Result<_, _>>()?,
            consent: commit.consent.iter().map(json).collect::<Result<_, _>>()?,
            contact: c.as_str(),
            now_ms: crate::clock::now_ms(),
            timer: commit.wake_at,
            profile: commit.profile.as_deref(),
            profile_ttl: commit.profile_ttl.as_secs().max(1),
            history: &commit.history,
            counts: &counts,
            stats_ttl: STATS_TTL,
            campaign_ttl: CAMPAIGN_TTL_S,
            data_key: claim.data_key.as_deref().unwrap_or(b""),
        };
        let mut inv = self.commit.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let left: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if left < 0 {
            return Ok(Committed::LeaseLost);
        }
        Ok(Committed::Done {
            inbox_left: left as u64,
        })
    }
}

impl RedisStore {
    /// The keys of `append.lua` for an entry of `queue`, and the contact
    /// (the ready set's member; empty for the system queues).
    fn append_keys<'q>(&self, queue: &'q Queue, dedup: &str, today: &str) -> (AppendKeys, &'q str) {
        let mut keys = AppendKeys {
            seen: self.queue_key(queue, &format!("seen:{dedup}")),
            stream: self.stream_key(queue),
            ready: None,
            consent: None,
            data_key: None,
            stats: None,
            last_campaign: None,
            campaign_prefix: None,
        };
        let (k, lane) = match queue {
            Queue::Contact(k) => (k, Lane::Inbox),
            // A job appended straight to an outbox (an integration event):
            // ready for the senders, under the outbox's own data key.
            Queue::Outbox(k) => (k, Lane::Outbox),
            _ => return (keys, ""),
        };
        keys.ready = Some(self.ready_key(lane, shard_of(k)));
        keys.consent = Some(self.contact_key(k, "consent"));
        keys.data_key = Some(self.contact_key(k, "key"));
        if lane == Lane::Inbox {
            keys.stats = Some(self.stats_key(shard_of(k), today));
            keys.last_campaign = Some(self.contact_key(k, "lastcmp"));
            keys.campaign_prefix = Some(self.shard_key(shard_of(k), "cmp:"));
        }
        (keys, k.as_str())
    }

    /// Appends the entries and records `links` (see
    /// [`Store::append_linked`]) in one pipeline.
    async fn append_with(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::clock::now_ms();
        let today = stats::today();
        let consents = entries
            .iter()
            .map(|e| e.consent.as_ref().map_or(Ok(String::new()), json))
            .collect::<Result<Vec<String>, StoreError>>()?;
        let values: Vec<Value> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                // Contact links the delivery shows (`store::links`): the
                // index, and the link unless the alias has one already.
                for (alias, canonical) in links {
                    pipe.cmd("SADD")
                        .arg(self.contact_key(canonical, "aliases"))
                        .arg(alias.as_str())
                        .ignore();
                    pipe.cmd("SET")
                        .arg(self.contact_key(alias, "link"))
                        .arg(canonical.as_str())
                        .arg("NX")
                        .ignore();
                }
                for (i, e) in entries.iter().enumerate() {
                    let (keys, member) = self.append_keys(&e.queue, &e.dedup, &today);
                    let counter = e.consent.as_ref().and_then(stats::of_consent);
                    let (data_key, fresh_key, key_ttl) = match &e.key {
                        Some(k) => (&k.wrapped[..], k.fresh, k.ttl.as_secs().max(1)),
                        None => (&b""[..], false, 1),
                    };
                    let args = AppendArgs {
                        dedup_ttl: DEDUP_TTL.as_secs(),
                        sealed: &e.sealed,
                        stream_ttl: INBOX_TTL.as_secs(),
                        now_ms: now,
                        contact: member,
                        consent: consents[i].as_str(),
                        data_key,
                        fresh_key,
                        key_ttl,
                        counter: counter.as_deref().unwrap_or(""),
                        stats_ttl: STATS_TTL,
                        campaign_ttl: CAMPAIGN_TTL_S,
                        refused: e.refused.as_deref().unwrap_or(b""),
                        grants_per_window: crate::domain::consent::GRANTS_PER_DAY,
                        grant_window: crate::domain::consent::GRANT_WINDOW_SECS,
                    };
                    args.args(Self::evalsha(&mut pipe, &self.append, &keys.keys()));
                }
                pipe
            })
            .await?;
        if values.len() != entries.len() {
            return Err(StoreError::Corrupt(format!(
                "expected {} replies, got {}",
                entries.len(),
                values.len()
            )));
        }
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::Nil => Appended::Duplicate,
                Value::Int(-1) => Appended::KeyMismatch,
                Value::Int(0) => Appended::NewSameConsent,
                Value::Int(-2) => Appended::NewGrantRefused,
                _ => Appended::New,
            })
            .collect())
    }
}
