//! The embedded backend: the campaigns role (see [`crate::store::CampaignStore`]).

use super::*;
use crate::domain::campaign::CampaignStatus;
use crate::store::CampaignStore;

#[async_trait]
impl CampaignStore for EmbeddedStore {
    async fn create_campaign(
        &self,
        id: &str,
        record: &[u8],
        audience: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let (id, record) = (id.to_owned(), record.to_vec());
        let created = crate::clock::now_ms();
        self.write(move |txn| {
            let id = id.as_str();
            let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let mut index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            // Created again (as on Redis: the record replaced, the audience
            // added to): it moves to its new place in the order.
            let before = campaigns.get(id).map_err(corrupt)?.map(|v| v.value().0);
            if let Some(at) = before {
                index.remove((at, id)).map_err(corrupt)?;
            }
            let mut table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            let mut members = txn
                .open_table(audience::CAMPAIGN_MEMBERS)
                .map_err(corrupt)?;
            let mut next = audience_bounds(&table, id)?.map_or(0, |(_, last)| last + 1);
            for entry in &audience {
                if audience::add(&mut table, &mut members, id, next, entry)? {
                    next += 1;
                }
            }
            campaigns
                .insert(
                    id,
                    (
                        created,
                        CampaignStatus::Scheduled.as_str(),
                        record.as_slice(),
                    ),
                )
                .map_err(corrupt)?;
            index.insert((created, id), ()).map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<crate::store::StoredCampaign>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in index.iter().map_err(corrupt)? {
                let (k, _) = item.map_err(corrupt)?;
                let id = k.value().1;
                if let Some(c) = read_campaign(&campaigns, id)? {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn campaign(&self, id: &str) -> Result<Option<crate::store::StoredCampaign>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            read_campaign(&campaigns, &id)
        })
        .await
    }

    async fn set_campaign_status(
        &self,
        id: &str,
        from: &[CampaignStatus],
        to: CampaignStatus,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let from = from.to_vec();
        self.write(move |txn| {
            let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let cur = campaigns.get(id.as_str()).map_err(corrupt)?.map(|v| {
                let (at, status, record) = v.value();
                (at, status.to_owned(), record.to_vec())
            });
            let Some((at, status, record)) = cur else {
                return Ok(false);
            };
            if !CampaignStatus::parse(&status).is_some_and(|s| from.contains(&s)) {
                return Ok(false);
            }
            campaigns
                .insert(id.as_str(), (at, to.as_str(), record.as_slice()))
                .map_err(corrupt)?;
            if to == CampaignStatus::Cancelled {
                // What was not dispatched will never be: its numbers go.
                let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
                let mut left = Vec::new();
                for item in audience
                    .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    left.push(item.map_err(corrupt)?.0.value().1);
                }
                for n in left {
                    audience.remove((id.as_str(), n)).map_err(corrupt)?;
                }
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                audience::forget_all(&mut members, &id)?;
            }
            Ok(true)
        })
        .await
    }

    async fn campaign_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut map = self
            .campaign_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map
            .get(id)
            .is_some_and(|(holder, until)| *until > now && holder != owner)
        {
            return Ok(false);
        }
        map.insert(id.to_owned(), (owner.to_owned(), now + lease));
        Ok(true)
    }

    async fn campaign_audience(&self, id: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in table
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(corrupt)?
                .take(limit)
            {
                let (_, v) = item.map_err(corrupt)?;
                out.push(v.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    async fn campaign_dispatch(
        &self,
        id: &str,
        owner: &str,
        sends: Vec<crate::store::CampaignSend>,
        consumed: usize,
        now_ms: u64,
    ) -> Result<(Vec<crate::store::Dispatched>, u64), StoreError> {
        use crate::store::Dispatched;
        // Only the lease's holder drops audience entries.
        let held = self
            .campaign_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|(holder, until)| holder == owner && *until > Instant::now());
        let id = id.to_owned();
        self.write(move |txn| {
            let id = id.as_str();
            let now = now_secs();
            let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
            let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            let mut keys = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
            let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
            let mut ready = txn.open_table(OUTBOX_READY).map_err(corrupt)?;
            let mut done = Vec::with_capacity(sends.len());
            for send in &sends {
                let contact = send.contact.as_str();
                let had_turn = marks
                    .get((contact, id))
                    .map_err(corrupt)?
                    .is_some_and(|v| v.value().0 > now);
                if had_turn {
                    done.push(Dispatched::Already);
                    continue;
                }
                let until = now + send.ttl.as_secs().max(1);
                match &send.job {
                    Ok(job) => {
                        // The data key check of `append`; a job must name
                        // the key it is sealed under.
                        let Some(key) = &send.key else {
                            done.push(Dispatched::KeyMismatch);
                            continue;
                        };
                        let stored = keys
                            .get(contact)
                            .map_err(corrupt)?
                            .and_then(|v| unexpired(v.value(), now));
                        match stored {
                            // A campaign does not lengthen the key's
                            // life: it is counted from the contact's last
                            // message (`privacy.retention_days`).
                            Some(w) if w == key.wrapped => {}
                            // Kept as long as the marks (`send.ttl`, as
                            // on Redis).
                            None if key.fresh => {
                                keys.insert(contact, (until, key.wrapped.as_slice()))
                                    .map_err(corrupt)?;
                            }
                            _ => {
                                done.push(Dispatched::KeyMismatch);
                                continue;
                            }
                        }
                        // Queued as `commit` queues outbox jobs.
                        let q = Queue::Outbox(send.contact.clone()).name();
                        let n = seq
                            .get(q.as_str())
                            .map_err(corrupt)?
                            .map_or(0, |v| v.value());
                        inbox
                            .insert((q.as_str(), n), job.as_slice())
                            .map_err(corrupt)?;
                        seq.insert(q.as_str(), n + 1).map_err(corrupt)?;
                        if ready.get(contact).map_err(corrupt)?.is_none() {
                            ready.insert(contact, now_ms).map_err(corrupt)?;
                        }
                        marks
                            .insert((contact, id), (until, Mark::Queued.code()))
                            .map_err(corrupt)?;
                        add_count(&mut counts, id, "queued", 1).map_err(corrupt)?;
                    }
                    Err(reason) => {
                        marks
                            .insert((contact, id), (until, Mark::Skipped.code()))
                            .map_err(corrupt)?;
                        add_count(&mut counts, id, &format!("skipped:{}", reason.as_str()), 1)
                            .map_err(corrupt)?;
                    }
                }
                add_count(&mut counts, id, "dispatched", 1).map_err(corrupt)?;
                done.push(Dispatched::Done);
            }
            let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            if held && consumed > 0 && !done.contains(&Dispatched::KeyMismatch) {
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                let mut front = Vec::with_capacity(consumed);
                for item in audience
                    .range((id, 0)..=(id, u64::MAX))
                    .map_err(corrupt)?
                    .take(consumed)
                {
                    let (k, v) = item.map_err(corrupt)?;
                    front.push((k.value().1, v.value().to_vec()));
                }
                for (n, entry) in front {
                    audience.remove((id, n)).map_err(corrupt)?;
                    audience::forget(&mut members, id, &entry)?;
                }
            }
            let left = audience_bounds(&audience, id)?.map_or(0, |(first, last)| last - first + 1);
            Ok((done, left))
        })
        .await
    }

    async fn campaign_left(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            Ok(audience_bounds(&table, &id)?.map_or(0, |(first, last)| last - first + 1))
        })
        .await
    }

    async fn campaign_counts(
        &self,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            let after = format!("{id}\0");
            let mut out = std::collections::BTreeMap::new();
            for item in table
                .range((id.as_str(), "")..(after.as_str(), ""))
                .map_err(corrupt)?
            {
                let (k, v) = item.map_err(corrupt)?;
                out.insert(k.value().1.to_owned(), v.value());
            }
            Ok(out)
        })
        .await
    }

    async fn briefs(
        &self,
        contacts: &[ContactKey],
    ) -> Result<Vec<crate::store::Brief>, StoreError> {
        let contacts = contacts.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let now = now_secs();
            let keys = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let profiles = txn.open_table(PROFILES).map_err(corrupt)?;
            let sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
            let session_expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
            let ledger = txn.open_table(CONSENT).map_err(corrupt)?;
            let suppressed = txn.open_table(SUPPRESSED).map_err(corrupt)?;
            let mut out = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let k = c.as_str();
                let live_session = session_expiry
                    .get(k)
                    .map_err(corrupt)?
                    .is_none_or(|v| v.value() > now);
                let session = if live_session {
                    sessions
                        .get(k)
                        .map_err(corrupt)?
                        .map(|v| v.value().to_vec())
                } else {
                    None
                };
                let q = format!("k:{k}");
                let mut consent = Vec::new();
                for item in ledger
                    .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    let (_, v) = item.map_err(corrupt)?;
                    if let Ok(change) = serde_json::from_slice(v.value()) {
                        consent.push(change);
                    }
                }
                out.push(crate::store::Brief {
                    data_key: keys
                        .get(k)
                        .map_err(corrupt)?
                        .and_then(|v| unexpired(v.value(), now)),
                    profile: profiles
                        .get(k)
                        .map_err(corrupt)?
                        .and_then(|v| unexpired(v.value(), now)),
                    session,
                    consent,
                    suppressed: suppressed.get(k).map_err(corrupt)?.map(|v| v.value()),
                });
            }
            Ok(out)
        })
        .await
    }
}
