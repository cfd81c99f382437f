//! The Redis backend: the businesses role (see
//! [`crate::store::BusinessStore`]).
//!
//! | key | type |
//! |---|---|
//! | `P{s:N}:owners` | hash: contact key → its business id (the shard's contacts) |
//! | `P{s:N}:owned` | hash: business id → how many of the shard's contacts are its |
//! | `P{s:N}:owners:stale` | hash: contact key → when a pruning pass first found it without data (its owner goes [`crate::store::PRUNE_GRACE`] later) |
//! | `P{meta}:removed` | hash: business id → its removal record (JSON) |
//!
//! A contact's owner sits in its shard's slot, so it is written and
//! forgotten in one script with the count, on one Redis or a Cluster.

use std::sync::LazyLock;

use redis::Script;

use super::scripts::{EnlistArgs, ForgetArgs, Keys, OwnerKeys};
use super::*;
use crate::domain::BusinessId;
use crate::store::{BusinessStore, KeyStore};

/// `lua/enlist.lua`: its header states its KEYS and ARGV.
static ENLIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/enlist.lua")));

/// `lua/forget.lua`: its header states its KEYS and ARGV.
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/forget.lua")));

/// A cursor over the shards' hashes: `shard:cursor`.
fn split_cursor(cursor: Option<&str>) -> (u16, u64) {
    cursor
        .and_then(|c| c.split_once(':'))
        .and_then(|(s, c)| Some((s.parse().ok()?, c.parse().ok()?)))
        .unwrap_or((0, 0))
}

/// The cursor after a page of shard `shard` that ended at `next`.
fn next_cursor(shard: u16, next: u64) -> Option<String> {
    if next != 0 {
        Some(format!("{shard}:{next}"))
    } else {
        (shard + 1 < SHARDS).then(|| format!("{}:0", shard + 1))
    }
}

impl RedisStore {
    fn owner_keys(&self, contact: &ContactKey) -> OwnerKeys {
        let shard = shard_of(contact);
        OwnerKeys {
            owners: self.shard_key(shard, "owners"),
            owned: self.shard_key(shard, "owned"),
        }
    }

    fn removals_key(&self) -> String {
        format!("{}{{meta}}:removed", self.prefix)
    }

    fn suppressed_key(&self) -> String {
        format!("{}{{suppressed}}", self.prefix)
    }

    /// One HSCAN page of hash `key` from `at`: its (field, value) pairs
    /// and the next cursor (0: done).
    async fn hscan(
        &self,
        key: String,
        at: u64,
        limit: usize,
    ) -> Result<(Vec<(String, String)>, u64), StoreError> {
        let mut conn = self.conn.clone();
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(at)
            .arg("COUNT")
            .arg(limit.max(10))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let pairs = flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [f, v] => Some((f.clone(), v.clone())),
                _ => None,
            })
            .collect();
        Ok((pairs, next))
    }

    /// One page of the owner index from `cursor` (`shard:cursor`): each
    /// contact with its business, and the next cursor (`None`: done).
    async fn owners_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(ContactKey, String)>, Option<String>), StoreError> {
        let (shard, at) = split_cursor(cursor);
        let (pairs, next) = self
            .hscan(self.shard_key(shard, "owners"), at, limit)
            .await?;
        let owners = pairs
            .into_iter()
            .filter_map(|(c, b)| Some((ContactKey::parse(&c)?, b)))
            .collect();
        Ok((owners, next_cursor(shard, next)))
    }

    /// One page of the suppression list from `at`: the keys and the next
    /// cursor (0: done).
    async fn suppressed_page(
        &self,
        at: u64,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, u64), StoreError> {
        let (pairs, next) = self.hscan(self.suppressed_key(), at, limit).await?;
        let keys = pairs
            .iter()
            .filter_map(|(c, _)| ContactKey::parse(c))
            .collect();
        Ok((keys, next))
    }

    /// Records the contacts as `business`'s where none is recorded, in
    /// pipelines of a few hundred; answers how many it recorded.
    async fn enlist_counted(
        &self,
        business: &BusinessId,
        contacts: &[ContactKey],
    ) -> Result<u64, StoreError> {
        if contacts.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        // Make sure Redis has the script: a pipeline cannot load it.
        let _: String = ENLIST
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut recorded = 0;
        for chunk in contacts.chunks(500) {
            let mut pipe = redis::pipe();
            for contact in chunk {
                Self::evalsha(&mut pipe, &ENLIST, &self.owner_keys(contact).keys());
                EnlistArgs {
                    contact: contact.as_str(),
                    business: business.as_str(),
                }
                .args(&mut pipe);
            }
            let done: Vec<i64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            recorded += done.iter().filter(|d| **d == 1).count() as u64;
        }
        Ok(recorded)
    }
}

#[async_trait]
impl BusinessStore for RedisStore {
    async fn enlist(
        &self,
        business: &BusinessId,
        contacts: &[ContactKey],
    ) -> Result<(), StoreError> {
        self.enlist_counted(business, contacts).await.map(|_| ())
    }

    async fn owner(&self, contact: &ContactKey) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(self.owner_keys(contact).owners)
            .arg(contact.as_str())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn members(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ContactKey>, Option<String>), StoreError> {
        let (owners, next) = self.owners_page(cursor.as_deref(), limit).await?;
        let contacts = owners
            .into_iter()
            .filter(|(_, b)| b == business.as_str())
            .map(|(c, _)| c)
            .collect();
        Ok((contacts, next))
    }

    async fn member_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for shard in 0..SHARDS {
            pipe.cmd("HGETALL").arg(self.shard_key(shard, "owned"));
        }
        let per_shard: Vec<Vec<(String, i64)>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
        for (business, n) in per_shard.into_iter().flatten() {
            *totals.entry(business).or_default() += n.max(0) as u64;
        }
        Ok(totals.into_iter().collect())
    }

    async fn forget(&self, contact: &ContactKey) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = FORGET.prepare_invoke();
        self.owner_keys(contact).add_to(&mut inv);
        ForgetArgs {
            contact: contact.as_str(),
        }
        .args(&mut inv);
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        let () = redis::pipe()
            .cmd("HDEL")
            .arg(self.suppressed_key())
            .arg(contact.as_str())
            .ignore()
            .cmd("HDEL")
            .arg(self.shard_key(shard_of(contact), "owners:stale"))
            .arg(contact.as_str())
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn adopt(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        // Two passes: the data keys (`k:` + their cursor), then the
        // suppression list (`s:` + its HSCAN cursor).
        let cursor = cursor.unwrap_or_else(|| "k:".to_owned());
        let (contacts, next) = match cursor.split_once(':') {
            Some(("s", at)) => {
                let (keys, next) = self.suppressed_page(at.parse().unwrap_or(0), limit).await?;
                (keys, (next != 0).then(|| format!("s:{next}")))
            }
            _ => {
                let inner = cursor.strip_prefix("k:").filter(|c| !c.is_empty());
                let (page, next) = self.data_keys(inner.map(str::to_owned), limit).await?;
                let keys = page.into_iter().map(|(k, _)| k).collect();
                (
                    keys,
                    Some(next.map_or_else(|| "s:0".to_owned(), |n| format!("k:{n}"))),
                )
            }
        };
        // Recorded only where no owner is (HSETNX): earlier releases'.
        let given = self.enlist_counted(business, &contacts).await?;
        Ok((given, next))
    }

    async fn prune_owners(
        &self,
        cursor: Option<String>,
        limit: usize,
        now: u64,
    ) -> Result<(u64, Option<String>), StoreError> {
        let (owners, next) = self.owners_page(cursor.as_deref(), limit).await?;
        let mut conn = self.conn.clone();
        let mut pruned = 0;
        for (contact, _) in owners {
            let (keyed, suppressed): (bool, bool) = redis::pipe()
                .cmd("EXISTS")
                .arg(self.contact_key(&contact, "key"))
                .cmd("HEXISTS")
                .arg(self.suppressed_key())
                .arg(contact.as_str())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let stale = self.shard_key(shard_of(&contact), "owners:stale");
            if keyed || suppressed {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&stale)
                    .arg(contact.as_str())
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                continue;
            }
            // Noted now, or when an earlier pass found it so.
            let (_, since, _): (i64, u64, i64) = redis::pipe()
                .cmd("HSETNX")
                .arg(&stale)
                .arg(contact.as_str())
                .arg(now)
                .cmd("HGET")
                .arg(&stale)
                .arg(contact.as_str())
                .cmd("EXPIRE")
                .arg(&stale)
                .arg(crate::store::STALE_TTL)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if now >= since + crate::store::PRUNE_GRACE {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&stale)
                    .arg(contact.as_str())
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let mut inv = FORGET.prepare_invoke();
                self.owner_keys(&contact).add_to(&mut inv);
                ForgetArgs {
                    contact: contact.as_str(),
                }
                .args(&mut inv);
                let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
                pruned += 1;
            }
        }
        Ok((pruned, next))
    }

    async fn adopted(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(format!(
                "{}{{meta}}:pin:{}",
                self.prefix,
                crate::store::ADOPTED_PIN
            ))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn removal(&self, business: &BusinessId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(self.removals_key())
            .arg(business.as_str())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn put_removal(&self, business: &BusinessId, record: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.removals_key())
            .arg(business.as_str())
            .arg(record)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn removals(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGETALL")
            .arg(self.removals_key())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn drop_campaign(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for suffix in ["", ":lease"] {
            pipe.cmd("DEL").arg(self.campaign_key(id, suffix)).ignore();
        }
        for key in self.audience_keys(id) {
            pipe.cmd("DEL").arg(key).ignore();
        }
        for shard in 0..SHARDS {
            pipe.cmd("DEL")
                .arg(self.shard_key(shard, &format!("cmp:{id}")))
                .ignore();
        }
        for index in ["index", "active"] {
            pipe.cmd("ZREM")
                .arg(format!("{}{{cmp}}:{index}", self.prefix))
                .arg(id)
                .ignore();
        }
        pipe.cmd("DEL")
            .arg(format!("{}rate:cmp:{id}", self.prefix))
            .ignore();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn drop_marks(
        &self,
        business: &BusinessId,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        let (names, next) = self.scan_contacts("seen:*", cursor, limit).await?;
        // The owner of each contact named, read once.
        let mut theirs: std::collections::HashMap<String, bool> = Default::default();
        let mut pipe = redis::pipe();
        let mut dropped = 0;
        for name in &names {
            let Some(c) = name
                .rsplit_once(":c:")
                .and_then(|(_, rest)| rest.split_once(':'))
                .and_then(|(c, _)| ContactKey::parse(c))
            else {
                continue;
            };
            let mine = match theirs.get(c.as_str()) {
                Some(m) => *m,
                None => {
                    let m = self.owner(&c).await?.as_deref() == Some(business.as_str());
                    theirs.insert(c.as_str().to_owned(), m);
                    m
                }
            };
            if mine {
                pipe.cmd("DEL").arg(name).ignore();
                dropped += 1;
            }
        }
        if dropped > 0 {
            let mut conn = self.conn.clone();
            let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        }
        Ok((dropped, next))
    }

    async fn drop_business(
        &self,
        business: &BusinessId,
        numbers: &[String],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for shard in 0..SHARDS {
            pipe.cmd("HDEL")
                .arg(self.shard_key(shard, "owned"))
                .arg(business.as_str())
                .ignore();
        }
        for number in numbers {
            pipe.cmd("DEL")
                .arg(format!("{}rate:pn:{number}", self.prefix))
                .ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_walks_every_shard_in_turn() {
        assert_eq!(split_cursor(None), (0, 0));
        assert_eq!(split_cursor(Some("3:17")), (3, 17));
        assert_eq!(next_cursor(3, 17).as_deref(), Some("3:17"));
        assert_eq!(next_cursor(3, 0).as_deref(), Some("4:0"));
        assert_eq!(next_cursor(SHARDS - 1, 0), None);
    }
}
