//! The outbox's scripts: `merge.lua` + `finish.lua` (a job finished),
//! `defer.lua`, `set_head.lua` and `wake.lua`.

use super::{Sink, counters, flag};

script_keys! {
    /// `merge.lua` + `finish.lua`.
    FinishKeys {
        lease, outbox, head, deliveries, dead, dead_index, consent, outbox_ready,
        due, stats, data_key, campaign_prefix, campaigns, last_campaign
    }
}

/// The ARGV of `finish.lua`.
pub(in crate::store::redis) struct FinishArgs<'a> {
    /// The holder's token.
    pub token: &'a str,
    /// The job's entry id in the outbox.
    pub entry: &'a str,
    /// Four values: the job's delivery record (job, wamid hash, rank,
    /// JSON; see `record_args`).
    pub record: [String; 4],
    /// The dead letter, or empty.
    pub dead_letter: &'a [u8],
    /// The dead index's score (Unix s).
    pub now: u64,
    pub contact: &'a str,
    /// The consent entry (JSON), or empty.
    pub consent: String,
    /// The job is the claim's last: the claim is released with it (`'1'`
    /// or empty).
    pub release: bool,
    /// Other entry ids to remove: sent as their number, then the ids.
    pub also: &'a [String],
    /// The counters of the day (name, amount): sent as their number,
    /// `stats_ttl`, then the pairs.
    pub counts: &'a [(String, u64)],
    pub stats_ttl: u64,
    pub campaign_ttl: u64,
    /// The wrapped data key the claim was sealed under, or empty.
    pub data_key: &'a [u8],
}

impl FinishArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.put(self.token);
        out.put(self.entry);
        for value in &self.record {
            out.put(value);
        }
        out.put(self.dead_letter);
        out.put(self.now);
        out.put(self.contact);
        out.put(&self.consent);
        out.put(flag(self.release));
        out.put(self.also.len());
        for other in self.also {
            out.put(other);
        }
        counters(out, self.counts, self.stats_ttl);
        out.put(self.campaign_ttl);
        out.put(self.data_key);
    }
}

script_keys! {
    /// `defer.lua`.
    DeferKeys { lease, head, due, outbox_ready }
}

/// The ARGV of `defer.lua`.
pub(in crate::store::redis) struct DeferArgs<'a> {
    /// The holder's token.
    pub token: &'a str,
    /// Two values: `'1'` and the head job's new retry state, or `'0'` and
    /// empty (`None` leaves it as it is).
    pub head: Option<&'a [u8]>,
    /// When to try again (Unix ms): the due mark's score.
    pub until_ms: u64,
    pub contact: &'a str,
}

impl DeferArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.token);
        out.one(if self.head.is_some() { "1" } else { "0" });
        out.one(self.head.unwrap_or(b""));
        out.one(self.until_ms);
        out.one(self.contact);
    }
}

script_keys! {
    /// `set_head.lua`.
    SetHeadKeys { lease, head }
}

script_args! {
    /// The ARGV of `set_head.lua`.
    SetHeadArgs<'a> {
        /// The holder's token.
        token: &'a str,
        /// The head job's retry state.
        head: &'a [u8],
    }
}

script_keys! {
    /// `wake.lua` (no ARGV).
    WakeKeys { due }
}
