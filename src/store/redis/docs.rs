//! The records role on Redis (see [`crate::store::DocStore`]):
//!
//! | key | what |
//! |---|---|
//! | `P{meta}:doc:<kind>` | hash: id → record |
//! | `P{meta}:once:<kind>:<id>` | a mark of `use_once`, expiring at its time |

use std::sync::LazyLock;

use redis::Script;

use super::*;
use crate::store::DocStore;

/// `lua/swap_doc.lua`: its header states its KEYS and ARGV.
static SWAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/swap_doc.lua")));

impl RedisStore {
    fn doc_key(&self, kind: &str) -> String {
        format!("{}{{meta}}:doc:{kind}", self.prefix)
    }
}

#[async_trait]
impl DocStore for RedisStore {
    async fn put_doc(&self, kind: &str, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.doc_key(kind))
            .arg(id)
            .arg(record)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn doc(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(self.doc_key(kind))
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn docs(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.doc_key(kind))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn swap_doc(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&[u8]>,
        record: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let swapped: i64 = SWAP
            .key(self.doc_key(kind))
            .arg(id)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(record)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(swapped == 1)
    }

    async fn drop_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("HDEL")
            .arg(self.doc_key(kind))
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn drop_docs(&self, kind: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.doc_key(kind))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn use_once(&self, kind: &str, id: &str, until: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{{meta}}:once:{kind}:{id}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(until.max(crate::clock::now_secs() + 1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }
}
