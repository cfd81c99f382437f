//! The embedded backend's retention pass: what is past its time to live
//! goes (Redis expires its keys itself).

use super::*;
/// How long delivery records and dead letters are kept (as on Redis).
const RECORDS_KEEP: u64 = 30 * 86_400;
/// How long a window (the customer's last message time) is kept.
const WINDOW_KEEP: u64 = 2 * 86_400;
/// The most records one purge pass removes per table (the next pass, an
/// hour later, goes on).
const PURGE_BATCH: usize = 50_000;

/// Keys of `table` whose value says they are past their time.
fn expired<V: redb::Value + 'static>(
    table: &impl ReadableTable<&'static str, V>,
    gone: impl Fn(V::SelfType<'_>) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter().map_err(corrupt)? {
        let (k, v) = item.map_err(corrupt)?;
        if gone(v.value()) {
            out.push(k.value().to_owned());
            if out.len() >= PURGE_BATCH {
                break;
            }
        }
    }
    Ok(out)
}

/// See [`crate::store::OpsStore::purge_expired`]: what is past its time to live at `now`;
/// answers how many records went.
pub(super) fn purge_expired(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for purge in [
        purge_deliveries,
        purge_dead_letters,
        purge_windows,
        purge_expiring,
        purge_sessions,
        purge_campaign_marks,
        purge_campaigns,
        purge_stats,
        super::docs::purge_once,
    ] {
        removed += purge(txn, now)?;
    }
    Ok(removed)
}
/// Delivery records (and their wamid links) 30 days after their time.
fn purge_deliveries(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut deliveries = txn.open_table(DELIVERIES).map_err(corrupt)?;
    let mut old: Vec<(String, String)> = Vec::new();
    for item in deliveries.iter().map_err(corrupt)? {
        let (k, v) = item.map_err(corrupt)?;
        let at = serde_json::from_slice::<Delivery>(v.value()).map_or(0, |d| d.at);
        if at + RECORDS_KEEP <= now {
            let (c, job) = k.value();
            old.push((c.to_owned(), job.to_owned()));
            if old.len() >= PURGE_BATCH {
                break;
            }
        }
    }
    let mut wamids = txn.open_table(WAMIDS).map_err(corrupt)?;
    let mut links: Vec<(String, String)> = Vec::new();
    for (c, job) in &old {
        deliveries
            .remove((c.as_str(), job.as_str()))
            .map_err(corrupt)?;
        let after = format!("{c}\0");
        for item in wamids
            .range((c.as_str(), "")..(after.as_str(), ""))
            .map_err(corrupt)?
        {
            let (k, v) = item.map_err(corrupt)?;
            if v.value() == job {
                links.push((c.clone(), k.value().1.to_owned()));
            }
        }
    }
    for (c, w) in &links {
        wamids.remove((c.as_str(), w.as_str())).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Dead letters: all of a contact's, 30 days after its last one.
fn purge_dead_letters(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut index = txn.open_table(DEAD_INDEX).map_err(corrupt)?;
    let old: Vec<String> = {
        let mut v = Vec::new();
        for item in index.iter().map_err(corrupt)? {
            let (k, at) = item.map_err(corrupt)?;
            if at.value() + RECORDS_KEEP <= now {
                v.push(k.value().to_owned());
            }
        }
        v
    };
    let mut dead = txn.open_table(DEAD).map_err(corrupt)?;
    let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
    for c in &old {
        let q = format!("d:{c}");
        dead.retain_in((q.as_str(), 0)..=(q.as_str(), u64::MAX), |_, _| false)
            .map_err(corrupt)?;
        seq.remove(q.as_str()).map_err(corrupt)?;
        index.remove(c.as_str()).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Windows two days after the customer's last message.
fn purge_windows(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut windows = txn.open_table(WINDOWS).map_err(corrupt)?;
    let mut old: Vec<(String, String)> = Vec::new();
    for item in windows.iter().map_err(corrupt)? {
        let (k, at) = item.map_err(corrupt)?;
        if at.value() + WINDOW_KEEP <= now {
            let (c, n) = k.value();
            old.push((c.to_owned(), n.to_owned()));
        }
    }
    for (c, n) in &old {
        windows.remove((c.as_str(), n.as_str())).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Profiles and data keys past their expiry; sessions idle past theirs.
fn purge_expiring(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for table in [PROFILES, DATA_KEYS, REWRAPPED] {
        let mut t = txn.open_table(table).map_err(corrupt)?;
        let old: Vec<String> = expired(&t, |v| v.0 <= now)?;
        for k in &old {
            t.remove(k.as_str()).map_err(corrupt)?;
        }
        removed += old.len();
    }
    Ok(removed)
}

/// Sessions idle past their expiry.
fn purge_sessions(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
    let old: Vec<String> = expired(&expiry, |v| v <= now)?;
    let mut sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
    for k in &old {
        sessions.remove(k.as_str()).map_err(corrupt)?;
        expiry.remove(k.as_str()).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Campaign marks and last campaigns past their expiry.
fn purge_campaign_marks(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
    let mut old: Vec<(String, String)> = Vec::new();
    for item in marks.iter().map_err(corrupt)? {
        let (k, v) = item.map_err(corrupt)?;
        if v.value().0 <= now {
            let (c, id) = k.value();
            old.push((c.to_owned(), id.to_owned()));
            if old.len() >= PURGE_BATCH {
                break;
            }
        }
    }
    for (c, id) in &old {
        marks.remove((c.as_str(), id.as_str())).map_err(corrupt)?;
    }
    removed += old.len();
    let mut last = txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
    let old: Vec<String> = expired(&last, |v| v.0 <= now)?;
    for k in &old {
        last.remove(k.as_str()).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Campaigns (their audience left and their counters) 400 days after
/// their creation.
fn purge_campaigns(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let cutoff_ms = now.saturating_sub(crate::store::CAMPAIGN_TTL.as_secs()) * 1000;
    let index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
    let mut old: Vec<(u64, String)> = Vec::new();
    for item in index
        .range((0, "")..(cutoff_ms + 1, ""))
        .map_err(corrupt)?
        .take(PURGE_BATCH)
    {
        let (k, _) = item.map_err(corrupt)?;
        let (at, id) = k.value();
        old.push((at, id.to_owned()));
    }
    drop(index);
    for (_, id) in &old {
        drop_campaign(txn, id)?;
    }
    removed += old.len();
    Ok(removed)
}

/// Deletes a campaign whole: its place in the order, definition, audience
/// and counters.
pub(super) fn drop_campaign(txn: &redb::WriteTransaction, id: &str) -> Result<(), StoreError> {
    let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
    let created = campaigns.remove(id).map_err(corrupt)?.map(|v| v.value().0);
    if let Some(at) = created {
        txn.open_table(CAMPAIGN_INDEX)
            .map_err(corrupt)?
            .remove((at, id))
            .map_err(corrupt)?;
    }
    txn.open_table(CAMPAIGN_AUDIENCE)
        .map_err(corrupt)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
        .map_err(corrupt)?;
    let mut members = txn
        .open_table(audience::CAMPAIGN_MEMBERS)
        .map_err(corrupt)?;
    audience::forget_all(&mut members, id)?;
    let after = format!("{id}\0");
    txn.open_table(CAMPAIGN_COUNTS)
        .map_err(corrupt)?
        .retain_in((id, "")..(after.as_str(), ""), |_, _| false)
        .map_err(corrupt)?;
    Ok(())
}

/// Statistics older than they are kept.
fn purge_stats(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let oldest = stats::day(now.saturating_sub(stats::KEEP_DAYS * 86_400));
    let mut t = txn.open_table(STATS).map_err(corrupt)?;
    let mut old: Vec<(String, String)> = Vec::new();
    for item in t.range(("", "")..(oldest.as_str(), "")).map_err(corrupt)? {
        let (k, _) = item.map_err(corrupt)?;
        let (d, n) = k.value();
        old.push((d.to_owned(), n.to_owned()));
    }
    for (d, n) in &old {
        t.remove((d.as_str(), n.as_str())).map_err(corrupt)?;
    }
    removed += old.len();
    Ok(removed)
}
