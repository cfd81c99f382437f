//! The embedded backend's erasure of a contact (see
//! [`crate::store::ContactStore::erase`]): every table that holds something
//! about them, in one transaction.

use super::*;
use crate::domain::campaign::CampaignStatus;

/// Erases what is kept about contact `k`, puts them on the suppression
/// list at `at` and adds one to `counter` (its business's erasures).
pub(super) fn erase(
    txn: &redb::WriteTransaction,
    k: &str,
    at: u64,
    counter: String,
) -> Result<(), StoreError> {
    let c = ContactKey::parse(k).ok_or_else(|| StoreError::Corrupt("contact key".into()))?;
    erase_logs(txn, &c)?;
    // (contact, …) keys.
    drop_pairs(txn, DELIVERIES, k)?;
    drop_pairs(txn, WAMIDS, k)?;
    drop_pairs(txn, WINDOWS, k)?;
    erase_campaign_marks(txn, k)?;
    remove(txn, LAST_CAMPAIGN, k)?;
    // Contact keys.
    remove(txn, SESSIONS, k)?;
    remove(txn, PROFILES, k)?;
    remove(txn, DATA_KEYS, k)?;
    remove(txn, REWRAPPED, k)?;
    remove(txn, SESSION_EXPIRY, k)?;
    remove(txn, OUTBOX_HEAD, k)?;
    remove(txn, DEAD_INDEX, k)?;
    remove(txn, READY, k)?;
    remove(txn, OUTBOX_READY, k)?;
    set_timer(txn, TIMERS, TIMER_OF, k, None)?;
    set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, k, None)?;
    txn.open_table(SUPPRESSED)
        .map_err(corrupt)?
        .insert(k, at)
        .map_err(corrupt)?;
    count(txn, &[(counter, 1)])?;
    Ok(())
}

/// Removes one key of a table keyed by contact.
fn remove<V: redb::Value + 'static>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&'static str, V>,
    k: &str,
) -> Result<(), StoreError> {
    txn.open_table(table)
        .map_err(corrupt)?
        .remove(k)
        .map_err(corrupt)?;
    Ok(())
}

/// Removes every `(contact, …)` key of a table.
fn drop_pairs<V: redb::Value + 'static>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<(&'static str, &'static str), V>,
    k: &str,
) -> Result<(), StoreError> {
    let after = format!("{k}\0");
    txn.open_table(table)
        .map_err(corrupt)?
        .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
        .map_err(corrupt)?;
    Ok(())
}

/// The contact's queues and numbered logs (inbox, outbox, history,
/// consent, dead letters) and their counters.
fn erase_logs(txn: &redb::WriteTransaction, c: &ContactKey) -> Result<(), StoreError> {
    let k = c.as_str();
    let c = ContactKey::parse(k).ok_or_else(|| StoreError::Corrupt("contact key".into()))?;
    // Queues and numbered logs: (name, seq) keys, and their counters.
    let inbox_q = Queue::Contact(c.clone()).name();
    let outbox_q = Queue::Outbox(c.clone()).name();
    {
        let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
        for q in [&inbox_q, &outbox_q] {
            inbox
                .retain_in((q.as_str(), 0)..=(q.as_str(), u64::MAX), |_, _| false)
                .map_err(corrupt)?;
        }
    }
    let history_q = format!("h:{k}");
    let consent_q = format!("k:{k}");
    let dead_q = format!("d:{k}");
    {
        let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
        let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
        let mut stamps = Vec::new();
        for item in history
            .range((history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX))
            .map_err(corrupt)?
        {
            let (key, value) = item.map_err(corrupt)?;
            stamps.push((value.value().0, key.value().1));
        }
        for (at, seq) in stamps {
            age.remove((at, history_q.as_str(), seq)).map_err(corrupt)?;
        }
        history
            .retain_in(
                (history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX),
                |_, _| false,
            )
            .map_err(corrupt)?;
    }
    txn.open_table(CONSENT)
        .map_err(corrupt)?
        .retain_in(
            (consent_q.as_str(), 0)..=(consent_q.as_str(), u64::MAX),
            |_, _| false,
        )
        .map_err(corrupt)?;
    txn.open_table(DEAD)
        .map_err(corrupt)?
        .retain_in(
            (dead_q.as_str(), 0)..=(dead_q.as_str(), u64::MAX),
            |_, _| false,
        )
        .map_err(corrupt)?;
    {
        let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
        for q in [&inbox_q, &outbox_q, &history_q, &consent_q, &dead_q] {
            seq.remove(q.as_str()).map_err(corrupt)?;
        }
    }
    Ok(())
}

/// A campaign job still queued will not go: it counts as skipped; and the
/// contact's entries in campaigns not dispatched yet go too.
fn erase_campaign_marks(txn: &redb::WriteTransaction, k: &str) -> Result<(), StoreError> {
    let after = format!("{k}\0");
    let now = now_secs();
    let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
    let mut queued = Vec::new();
    for item in marks
        .range((k, "")..(after.as_str(), ""))
        .map_err(corrupt)?
    {
        let (key, value) = item.map_err(corrupt)?;
        let (until, mark) = value.value();
        if Mark::of(mark) == Some(Mark::Queued) && until > now {
            queued.push(key.value().1.to_owned());
        }
    }
    let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
    for cid in &queued {
        add_count(&mut counts, cid, "queued", -1).map_err(corrupt)?;
        add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
    }
    marks
        .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
        .map_err(corrupt)?;
    // Their entries in campaigns not dispatched yet (their
    // number, sealed) go too, by key: counted as skipped.
    let active: Vec<String> = {
        let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
        let mut ids = Vec::new();
        for item in campaigns.iter().map_err(corrupt)? {
            let (id, value) = item.map_err(corrupt)?;
            if CampaignStatus::parse(value.value().1).is_some_and(CampaignStatus::is_active) {
                ids.push(id.value().to_owned());
            }
        }
        ids
    };
    let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
    let mut members = txn
        .open_table(audience::CAMPAIGN_MEMBERS)
        .map_err(corrupt)?;
    for cid in &active {
        if audience::unlist(&mut audience, &mut members, cid, k)? {
            add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
            add_count(&mut counts, cid, "dispatched", 1).map_err(corrupt)?;
        }
    }
    Ok(())
}
