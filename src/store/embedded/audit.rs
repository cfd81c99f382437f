//! The audit log in the embedded store: its stored head, pages newest
//! first, and the request index (the tables are listed in the module docs
//! of the backend).

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::*;
use super::{AUDIT, audit_last, corrupt};

use crate::domain::audit::Entry;

use crate::store::AuditStore;
use crate::store::StoreError;
use crate::store::audit_index::{self, CLOSED_KEEP, Op, Requests};

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.blocking(|db| audit::head(&db.begin_read().map_err(corrupt)?))
            .await
    }

    async fn audit_append(&self, entry: &crate::domain::audit::Entry) -> Result<bool, StoreError> {
        self.audit_append_run(std::slice::from_ref(entry)).await
    }

    async fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(AUDIT).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in table.range(from..).map_err(corrupt)?.take(limit) {
                let (_, v) = item.map_err(corrupt)?;
                out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError> {
        self.blocking(move |db| audit::page(&db.begin_read().map_err(corrupt)?, before, limit))
            .await
    }

    async fn audit_append_run(
        &self,
        entries: &[crate::domain::audit::Entry],
    ) -> Result<bool, StoreError> {
        let entries = entries.to_vec();
        self.write(move |txn| audit::append_run(txn, &entries))
            .await
    }

    async fn audit_requests(&self) -> Result<crate::store::audit_index::Requests, StoreError> {
        self.blocking(|db| audit::requests(&db.begin_read().map_err(corrupt)?))
            .await
    }

    async fn audit_request_lapsed(
        &self,
        request: &crate::domain::audit::Entry,
    ) -> Result<bool, StoreError> {
        let request = request.clone();
        self.write(move |txn| audit::lapse(txn, &request)).await
    }

    async fn audit_requests_reset(
        &self,
        through: u64,
        index: &crate::store::audit_index::Replay,
    ) -> Result<bool, StoreError> {
        let index = index.clone();
        self.write(move |txn| audit::reset(txn, through, &index))
            .await
    }
}

/// `"head"` → (seq, hash) of the last entry appended.
pub(super) const AUDIT_HEAD: TableDefinition<&str, (u64, &str)> =
    TableDefinition::new("audit_head");
/// (group, seq) → (op tag, entry JSON): the open requests' entries.
pub(super) const OPEN: TableDefinition<(&str, u64), (&str, &[u8])> =
    TableDefinition::new("audit_requests");
/// seq → entry JSON: the newest entries of closed requests.
pub(super) const CLOSED: TableDefinition<u64, &[u8]> =
    TableDefinition::new("audit_requests_closed");

const HEAD: &str = "head";
/// In [`AUDIT_HEAD`]: the first entry the request index saw (1 once
/// complete), as (seq, "").
const INDEXED_FROM: &str = "indexed_from";

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AUDIT_HEAD).map_err(corrupt)?;
    txn.open_table(OPEN).map_err(corrupt)?;
    txn.open_table(CLOSED).map_err(corrupt)?;
    Ok(())
}

fn entry_of(bytes: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// The stored head, else (a store from before it was kept) the last entry.
fn head_of(
    heads: &impl ReadableTable<&'static str, (u64, &'static str)>,
    log: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<(u64, String), StoreError> {
    match heads.get(HEAD).map_err(corrupt)? {
        Some(v) => {
            let (seq, hash) = v.value();
            Ok((seq, hash.to_owned()))
        }
        None => audit_last(log),
    }
}

pub(super) fn head(txn: &ReadTransaction) -> Result<(u64, String), StoreError> {
    let heads = txn.open_table(AUDIT_HEAD).map_err(corrupt)?;
    let log = txn.open_table(AUDIT).map_err(corrupt)?;
    head_of(&heads, &log)
}

pub(super) fn page(
    txn: &ReadTransaction,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let log = txn.open_table(AUDIT).map_err(corrupt)?;
    let mut out = Vec::new();
    for item in log
        .range(..before.unwrap_or(u64::MAX))
        .map_err(corrupt)?
        .rev()
        .take(limit)
    {
        let (_, v) = item.map_err(corrupt)?;
        out.push(entry_of(v.value())?);
    }
    Ok(out)
}

/// Appends `entries` in order, each only after the head; false (the rest
/// not written) from the first that does not follow.
pub(super) fn append_run(txn: &WriteTransaction, entries: &[Entry]) -> Result<bool, StoreError> {
    let mut log = txn.open_table(AUDIT).map_err(corrupt)?;
    let mut heads = txn.open_table(AUDIT_HEAD).map_err(corrupt)?;
    let (mut seq, mut hash) = head_of(&heads, &log)?;
    for entry in entries {
        if entry.seq != seq + 1 || entry.prev != hash {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(entry).map_err(corrupt)?;
        log.insert(entry.seq, bytes.as_slice()).map_err(corrupt)?;
        heads
            .insert(HEAD, (entry.seq, entry.hash.as_str()))
            .map_err(corrupt)?;
        if heads.get(INDEXED_FROM).map_err(corrupt)?.is_none() {
            heads
                .insert(INDEXED_FROM, (entry.seq, ""))
                .map_err(corrupt)?;
        }
        index(txn, entry, &bytes)?;
        (seq, hash) = (entry.seq, entry.hash.clone());
    }
    Ok(true)
}

/// The index's part of appending `entry` (its JSON is `bytes`).
fn index(txn: &WriteTransaction, entry: &Entry, bytes: &[u8]) -> Result<(), StoreError> {
    let Some((op, group)) = audit_index::op_of(entry) else {
        return Ok(());
    };
    let mut open = txn.open_table(OPEN).map_err(corrupt)?;
    let group = group.as_str();
    let members = group_entries(&open, group)?;
    match op {
        Op::Confirm if members.is_empty() => {}
        Op::Open | Op::Confirm => {
            open.insert((group, entry.seq), (op.tag(), bytes))
                .map_err(corrupt)?;
        }
        Op::Close if members.is_empty() => {}
        Op::Close => {
            let mut closed = txn.open_table(CLOSED).map_err(corrupt)?;
            for (seq, _, json) in &members {
                open.remove((group, *seq)).map_err(corrupt)?;
                closed.insert(*seq, json.as_slice()).map_err(corrupt)?;
            }
            closed.insert(entry.seq, bytes).map_err(corrupt)?;
            trim(&mut closed)?;
        }
    }
    Ok(())
}

/// A group's open entries: (seq, op tag, JSON), oldest first.
fn group_entries(
    open: &impl ReadableTable<(&'static str, u64), (&'static str, &'static [u8])>,
    group: &str,
) -> Result<Vec<(u64, String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for item in open
        .range((group, 0)..=(group, u64::MAX))
        .map_err(corrupt)?
    {
        let (k, v) = item.map_err(corrupt)?;
        let (tag, json) = v.value();
        out.push((k.value().1, tag.to_owned(), json.to_vec()));
    }
    Ok(out)
}

/// Keeps the newest [`CLOSED_KEEP`] closed entries.
fn trim(closed: &mut redb::Table<u64, &'static [u8]>) -> Result<(), StoreError> {
    let extra = closed
        .len()
        .map_err(corrupt)?
        .saturating_sub(CLOSED_KEEP as u64);
    for _ in 0..extra {
        closed.pop_first().map_err(corrupt)?;
    }
    Ok(())
}

pub(super) fn requests(txn: &ReadTransaction) -> Result<Requests, StoreError> {
    let open_t = txn.open_table(OPEN).map_err(corrupt)?;
    let closed_t = txn.open_table(CLOSED).map_err(corrupt)?;
    let mut open = Vec::new();
    for item in open_t.iter().map_err(corrupt)? {
        let (_, v) = item.map_err(corrupt)?;
        open.push(entry_of(v.value().1)?);
    }
    open.sort_by_key(|e| e.seq);
    let mut closed = Vec::new();
    for item in closed_t.iter().map_err(corrupt)? {
        let (_, v) = item.map_err(corrupt)?;
        closed.push(entry_of(v.value())?);
    }
    let heads = txn.open_table(AUDIT_HEAD).map_err(corrupt)?;
    let from = heads
        .get(INDEXED_FROM)
        .map_err(corrupt)?
        .map(|v| v.value().0);
    let empty = head(txn)?.0 == 0;
    Ok(Requests {
        open,
        closed,
        complete: empty || from == Some(1),
    })
}

/// Replaces the index with `index` (rebuilt up to `through`) and marks it
/// complete, unless the head moved.
pub(super) fn reset(
    txn: &WriteTransaction,
    through: u64,
    index: &audit_index::Replay,
) -> Result<bool, StoreError> {
    let mut heads = txn.open_table(AUDIT_HEAD).map_err(corrupt)?;
    let log = txn.open_table(AUDIT).map_err(corrupt)?;
    if head_of(&heads, &log)?.0 != through {
        return Ok(false);
    }
    let mut open = txn.open_table(OPEN).map_err(corrupt)?;
    let mut closed = txn.open_table(CLOSED).map_err(corrupt)?;
    open.retain(|_, _| false).map_err(corrupt)?;
    closed.retain(|_, _| false).map_err(corrupt)?;
    for (group, members) in &index.open {
        for (op, e) in members {
            let bytes = serde_json::to_vec(e).map_err(corrupt)?;
            open.insert((group.as_str(), e.seq), (op.tag(), bytes.as_slice()))
                .map_err(corrupt)?;
        }
    }
    for (seq, e) in &index.closed {
        let bytes = serde_json::to_vec(e).map_err(corrupt)?;
        closed.insert(*seq, bytes.as_slice()).map_err(corrupt)?;
    }
    heads.insert(INDEXED_FROM, (1, "")).map_err(corrupt)?;
    Ok(true)
}

/// Moves the group of `request` to the closed entries when `request` is
/// its newest entry and nothing in it was confirmed.
pub(super) fn lapse(txn: &WriteTransaction, request: &Entry) -> Result<bool, StoreError> {
    let Some((_, group)) = audit_index::op_of(request) else {
        return Ok(false);
    };
    let group = group.as_str();
    let mut open = txn.open_table(OPEN).map_err(corrupt)?;
    let members = group_entries(&open, group)?;
    let unconfirmed = members.iter().all(|(_, tag, _)| tag == Op::Open.tag());
    if members.last().map(|m| m.0) != Some(request.seq) || !unconfirmed {
        return Ok(false);
    }
    let mut closed = txn.open_table(CLOSED).map_err(corrupt)?;
    for (seq, _, json) in &members {
        open.remove((group, *seq)).map_err(corrupt)?;
        closed.insert(*seq, json.as_slice()).map_err(corrupt)?;
    }
    trim(&mut closed)?;
    Ok(true)
}
