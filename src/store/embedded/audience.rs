//! An index of each campaign's audience by contact, so that an erasure
//! removes a contact from every waiting campaign by key (a lookup and two
//! removals per campaign), without reading the audiences.
//!
//! (campaign id, contact key) → the entry's place in
//! [`super::CAMPAIGN_AUDIENCE`]. Entries that name no contact (no `|`)
//! are not indexed. A contact is in an audience once: a later entry of the
//! same contact is not stored (the first counts), as on Redis.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{CAMPAIGN_AUDIENCE, corrupt};
use crate::store::StoreError;

pub const CAMPAIGN_MEMBERS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("campaign_members");

/// The contact key an audience entry starts with (before its `|`).
pub fn contact_of(entry: &[u8]) -> Option<&str> {
    let bar = entry.iter().position(|b| *b == b'|')?;
    std::str::from_utf8(&entry[..bar]).ok()
}

/// Indexes the audiences stored before the index existed (once: when the
/// index is empty and audiences are not).
pub fn index_older_audiences(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut members = txn.open_table(CAMPAIGN_MEMBERS).map_err(corrupt)?;
    let audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
    if !members.is_empty().map_err(corrupt)? || audience.is_empty().map_err(corrupt)? {
        return Ok(());
    }
    for item in audience.iter().map_err(corrupt)? {
        let (k, v) = item.map_err(corrupt)?;
        let (cid, n) = k.value();
        if let Some(contact) = contact_of(v.value())
            && members.get((cid, contact)).map_err(corrupt)?.is_none()
        {
            members.insert((cid, contact), n).map_err(corrupt)?;
        }
    }
    Ok(())
}

/// Adds `entry` at place `n` of campaign `cid`'s audience, unless its
/// contact is in it already; true when added.
pub fn add(
    audience: &mut redb::Table<(&str, u64), &[u8]>,
    members: &mut redb::Table<(&str, &str), u64>,
    cid: &str,
    n: u64,
    entry: &[u8],
) -> Result<bool, StoreError> {
    if let Some(contact) = contact_of(entry) {
        if members.get((cid, contact)).map_err(corrupt)?.is_some() {
            return Ok(false);
        }
        members.insert((cid, contact), n).map_err(corrupt)?;
    }
    audience.insert((cid, n), entry).map_err(corrupt)?;
    Ok(true)
}

/// Removes `contact`'s entry from campaign `cid`'s audience by key; true
/// when there was one.
pub fn unlist(
    audience: &mut redb::Table<(&str, u64), &[u8]>,
    members: &mut redb::Table<(&str, &str), u64>,
    cid: &str,
    contact: &str,
) -> Result<bool, StoreError> {
    let Some(n) = members.remove((cid, contact)).map_err(corrupt)? else {
        return Ok(false);
    };
    let n = n.value();
    Ok(audience.remove((cid, n)).map_err(corrupt)?.is_some())
}

/// Forgets the index entry of a dispatched (or dropped) audience entry.
pub fn forget(
    members: &mut redb::Table<(&str, &str), u64>,
    cid: &str,
    entry: &[u8],
) -> Result<(), StoreError> {
    if let Some(contact) = contact_of(entry) {
        members.remove((cid, contact)).map_err(corrupt)?;
    }
    Ok(())
}

/// Forgets a whole campaign's index (cancelled, or purged).
pub fn forget_all(
    members: &mut redb::Table<(&str, &str), u64>,
    cid: &str,
) -> Result<(), StoreError> {
    let after = format!("{cid}\0");
    members
        .retain_in((cid, "")..(after.as_str(), ""), |_, _| false)
        .map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_audiences_are_indexed_and_a_contact_leaves_by_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        let txn = db.begin_write().expect("write");
        {
            let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).expect("table");
            for (n, e) in [&b"aa|x"[..], b"bb|y", b"no-contact", b"aa|again"]
                .into_iter()
                .enumerate()
            {
                audience.insert(("c1", n as u64), e).expect("insert");
            }
        }
        index_older_audiences(&txn).expect("indexed");
        {
            let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).expect("table");
            let mut members = txn.open_table(CAMPAIGN_MEMBERS).expect("table");
            assert_eq!(members.len().expect("len"), 2);
            assert!(unlist(&mut audience, &mut members, "c1", "bb").expect("unlist"));
            assert!(!unlist(&mut audience, &mut members, "c1", "bb").expect("unlist"));
            assert!(!unlist(&mut audience, &mut members, "c2", "aa").expect("unlist"));
            assert!(audience.get(("c1", 1)).expect("get").is_none());
            assert_eq!(audience.len().expect("len"), 3);
            // A contact already in the audience is not added again.
            assert!(!add(&mut audience, &mut members, "c1", 9, b"aa|z").expect("add"));
            assert!(add(&mut audience, &mut members, "c1", 9, b"cc|z").expect("add"));
            forget_all(&mut members, "c1").expect("forget");
            assert!(members.is_empty().expect("empty"));
        }
        txn.commit().expect("commit");
    }
}
