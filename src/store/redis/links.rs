//! Contact links on Redis (see [`crate::store::links`]): an alias's
//! `P{s:N}:c:<contact>:link` names the canonical contact, in the alias's slot next to its data key,
//! and `P{s:M}:c:<canonical>:aliases` indexes the aliases, in the canonical
//! contact's slot, for its erasure.

use redis::Value;

use super::scripts::{Keys, UnlinkArgs, UnlinkKeys};
use super::{RedisStore, unavailable};
use crate::domain::ContactKey;
use crate::store::{Resolved, StoreError};

/// `lua/unlink.lua`: its header states its KEYS and ARGV.
const UNLINK_LUA: &str = include_str!("lua/unlink.lua");

fn parse_key(v: Option<String>) -> Result<Option<ContactKey>, StoreError> {
    v.map(|s| ContactKey::parse(&s).ok_or_else(|| StoreError::Corrupt("contact link".into())))
        .transpose()
}

impl RedisStore {
    pub(super) async fn resolve_links(
        &self,
        keys: &[ContactKey],
    ) -> Result<Vec<Resolved>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("GET").arg(self.contact_key(k, "link"));
            pipe.cmd("EXISTS").arg(self.contact_key(k, "key"));
        }
        let mut conn = self.conn.clone();
        let flat: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        if flat.len() != keys.len() * 2 {
            return Err(StoreError::Corrupt("short reply".into()));
        }
        flat.chunks(2)
            .map(|row| {
                let (link, known): (Option<String>, bool) =
                    redis::FromRedisValue::from_redis_value(Value::Array(row.to_vec()))
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Resolved {
                    link: parse_key(link)?,
                    known,
                })
            })
            .collect()
    }

    pub(super) async fn add_links(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError> {
        if links.is_empty() {
            return Ok(Vec::new());
        }
        // The index first: a link is never without it (an extra member
        // whose link names another contact is ignored).
        let mut pipe = redis::pipe();
        for (alias, canonical) in links {
            pipe.cmd("SADD")
                .arg(self.contact_key(canonical, "aliases"))
                .arg(alias.as_str())
                .ignore();
        }
        for (alias, canonical) in links {
            let link = self.contact_key(alias, "link");
            pipe.cmd("SET")
                .arg(&link)
                .arg(canonical.as_str())
                .arg("NX")
                .ignore();
            pipe.cmd("GET").arg(&link);
        }
        let mut conn = self.conn.clone();
        let got: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        links
            .iter()
            .zip(got)
            .map(|((_, canonical), v)| Ok(parse_key(v)?.unwrap_or_else(|| canonical.clone())))
            .collect()
    }

    pub(super) async fn aliases_of(
        &self,
        canonical: &ContactKey,
    ) -> Result<Vec<ContactKey>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.contact_key(canonical, "aliases"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let members: Vec<ContactKey> = members
            .iter()
            .filter_map(|m| ContactKey::parse(m))
            .collect();
        let resolved = self.resolve_links(&members).await?;
        Ok(members
            .into_iter()
            .zip(resolved)
            .filter(|(_, r)| r.link.as_ref() == Some(canonical))
            .map(|(m, _)| m)
            .collect())
    }

    pub(super) async fn drop_links(&self, canonical: &ContactKey) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let index = self.contact_key(canonical, "aliases");
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let script = redis::Script::new(UNLINK_LUA);
        for alias in members.iter().filter_map(|m| ContactKey::parse(m)) {
            let keys = UnlinkKeys {
                link: self.contact_key(&alias, "link"),
            };
            let args = UnlinkArgs {
                canonical: canonical.as_str(),
            };
            let mut inv = script.prepare_invoke();
            keys.add_to(&mut inv);
            args.args(&mut inv);
            let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        }
        let _: i64 = redis::cmd("DEL")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
