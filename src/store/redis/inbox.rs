//! The Redis backend: the inbox role (see [`crate::store::InboxStore`]).

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
        let mut inv = self.commit.prepare_invoke();
        let (window_number, window_at) = commit.window.clone().unwrap_or_default();
        inv.key(self.lease_key(Lane::Inbox, c))
            .key(self.contact_key(c, "inbox"))
            .key(self.contact_key(c, "session"))
            .key(self.contact_key(c, "outbox"))
            .key(self.contact_key(c, "window"))
            .key(self.contact_key(c, "deliveries"))
            .key(self.contact_key(c, "consent"))
            .key(self.ready_key(Lane::Inbox, shard))
            .key(self.ready_key(Lane::Outbox, shard))
            .key(self.timers_key(Lane::Inbox, shard))
            .key(self.contact_key(c, "profile"))
            .key(self.contact_key(c, "history"))
            .key(self.shard_key(shard, "history"))
            .key(self.stats_key(shard, &stats::today()))
            .key(self.contact_key(c, "key"))
            .key(self.shard_key(shard, "cmp:"))
            .key(self.contact_key(c, "cmp"))
            .key(self.contact_key(c, "lastcmp"))
            .arg(&claim.owner)
            .arg(commit.session_ttl.as_secs().max(1))
            .arg(if commit.session.is_some() { "1" } else { "0" })
            .arg(commit.session.as_deref().unwrap_or(b""))
            .arg(commit.acked.len())
            .arg(commit.outbox.len())
            .arg(window_number)
            .arg(window_at)
            .arg(commit.deliveries.len())
            .arg(commit.consent.len())
            .arg(c.as_str())
            .arg(crate::clock::now_ms())
            .arg(commit.wake_at.map(|t| t.to_string()).unwrap_or_default())
            .arg(commit.profile.as_deref().unwrap_or(b""))
            .arg(commit.profile_ttl.as_secs().max(1))
            .arg(commit.history.len());
        for id in &commit.acked {
            inv.arg(id);
        }
        for job in &commit.outbox {
            inv.arg(&job[..]);
        }
        for d in &commit.deliveries {
            for a in record_args(d)? {
                inv.arg(a);
            }
        }
        for change in &commit.consent {
            inv.arg(json(change)?);
        }
        for item in &commit.history {
            inv.arg(&item[..]);
        }
        let counts = stats::with_consent(&commit.stats, commit.consent.iter());
        inv.arg(counts.len()).arg(STATS_TTL);
        for (name, n) in &counts {
            inv.arg(name).arg(*n);
        }
        inv.arg(CAMPAIGN_TTL_S)
            .arg(claim.data_key.as_deref().unwrap_or(b""));
        let left: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if left < 0 {
            return Ok(Committed::LeaseLost);
        }
        Ok(Committed::Done {
            inbox_left: left as u64,
        })
    }
}
