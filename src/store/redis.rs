//! The Redis backend.
//!
//! Keys (`P` is `store.key_prefix`; `{…}` is a Redis Cluster hash tag, so
//! all keys of one queue live in one slot):
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `P{c:<contact>}:inbox` | stream of sealed events (field `e`) | 30 days after the last append |
//! | `P{c:<contact>}:seen:<dedup>` | string, de-duplication mark | 8 days |
//! | `P{sys}:inbox`, `P{sys}:seen:<dedup>` | the same, for account-level events | 30 days / 8 days |
//! | `P{quarantine}:inbox`, `P{quarantine}:seen:<sha>` | unreadable signed bodies | 30 days / 8 days |
//! | `Pinbox:ready` | sorted set: contacts with pending events, by first arrival (ms) | none: members leave when their inbox is drained |
//!
//! `<contact>` is the pseudonymous contact key, never a phone number;
//! `<dedup>` is a keyed hash. The seen-mark and the append happen in one
//! Lua script, so concurrent duplicate deliveries to any number of
//! instances append once. The ready mark is written before the append in
//! the same pipeline: a crash between the two leaves a harmless extra mark,
//! never an event nobody will look at.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};
use secrecy::{ExposeSecret, SecretString};

use super::{Appended, DEDUP_TTL, INBOX_TTL, InboxEntry, Queue, Store, StoreError, StoredEntry};
use crate::domain::ContactKey;

const APPEND_LUA: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local id = redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return id
end
return false
"#;

/// The Redis store; cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    append: redis::Script,
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects (and keeps reconnecting) to `url`; keys go under `prefix`.
    pub async fn connect(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret()).map_err(|_| {
            StoreError::Unavailable("store.redis_url is not a valid Redis URL".into())
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            append: redis::Script::new(APPEND_LUA),
        })
    }

    fn key(&self, queue: &Queue, suffix: &str) -> String {
        format!("{}{{{}}}:{}", self.prefix, queue.name(), suffix)
    }

    fn ready_key(&self) -> String {
        format!("{}inbox:ready", self.prefix)
    }

    async fn run_append(&self, entries: &[InboxEntry]) -> Result<Vec<Value>, RedisError> {
        let mut pipe = redis::pipe();
        let now_ms = super::now_secs() * 1000;
        let mut marked = std::collections::HashSet::new();
        for e in entries {
            if let Queue::Contact(k) = &e.queue
                && marked.insert(k.as_str())
            {
                pipe.cmd("ZADD")
                    .arg(self.ready_key())
                    .arg("NX")
                    .arg(now_ms)
                    .arg(k.as_str())
                    .ignore();
            }
        }
        for e in entries {
            pipe.cmd("EVALSHA")
                .arg(self.append.get_hash())
                .arg(2)
                .arg(self.key(&e.queue, &format!("seen:{}", e.dedup)))
                .arg(self.key(&e.queue, "inbox"))
                .arg(DEDUP_TTL.as_secs())
                .arg(&e.sealed[..])
                .arg(INBOX_TTL.as_secs());
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let values = match self.run_append(&entries).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut conn = self.conn.clone();
                self.append
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                self.run_append(&entries).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
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
                _ => Appended::New,
            })
            .collect())
    }

    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key(queue, "inbox"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        reply
            .ids
            .into_iter()
            .map(|sid| {
                let sealed = match sid.map.get("e") {
                    Some(Value::BulkString(b)) => b.clone(),
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "inbox entry {} has no body",
                            sid.id
                        )));
                    }
                };
                Ok(StoredEntry { id: sid.id, sealed })
            })
            .collect()
    }

    async fn ready_contacts(&self, limit: usize) -> Result<Vec<ContactKey>, StoreError> {
        let mut conn = self.conn.clone();
        let stop = limit.saturating_sub(1) as i64;
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.ready_key())
            .arg(0)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| ContactKey::parse(m))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
