//! The contacts' scripts: `erase.lua`, `purge.lua`, `consent.lua` and
//! `unlink.lua`.

use super::Sink;

script_keys! {
    /// `erase.lua`: the contact's own keys (deleted), `inbox` to
    /// `campaigns`, then its shard's sets it leaves and the shard's
    /// statistics of the day.
    EraseKeys {
        inbox, outbox, session, profile, history, consent, deliveries, window, dead,
        /// The outbox's head job's retry state.
        head,
        inbox_lease, outbox_lease, data_key,
        /// The data key's previous wrapping.
        data_key_was,
        last_campaign,
        /// The contact's campaign marks: read (a message still queued
        /// counts as skipped), then deleted with the rest.
        campaigns,
        inbox_ready, outbox_ready, timers, due, dead_index, history_index, stats
    }
}

impl EraseKeys {
    /// How many keys are the contact's own (`KEYS[1]` to this, deleted).
    pub const OWN: usize = 16;
    /// Where `campaigns` is in KEYS (from 1).
    pub const CAMPAIGNS_AT: usize = 16;
}

/// The ARGV of `erase.lua`: `own_keys` ([`EraseKeys::OWN`]), `contact`,
/// `stats_ttl`, `campaigns_at` ([`EraseKeys::CAMPAIGNS_AT`]),
/// `campaign_prefix`, `campaign_ttl`, `counter`.
pub(in crate::store::redis) struct EraseArgs<'a> {
    /// The member the contact is in its shard's sets.
    pub contact: &'a str,
    /// The erasures counter of the contact's business.
    pub counter: &'a str,
    pub stats_ttl: u64,
    /// The shard's campaign counters prefix (`P{s:N}:cmp:`).
    pub campaign_prefix: String,
    pub campaign_ttl: u64,
}

impl EraseArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(EraseKeys::OWN);
        out.one(self.contact);
        out.one(self.stats_ttl);
        out.one(EraseKeys::CAMPAIGNS_AT);
        out.one(self.campaign_prefix.as_str());
        out.one(self.campaign_ttl);
        out.one(self.counter);
    }
}

script_keys! {
    /// `purge.lua`: the contact's history, its shard's history index and
    /// the contact's legal hold mark.
    PurgeKeys { history, history_index, held }
}

script_args! {
    /// The ARGV of `purge.lua`.
    PurgeArgs<'a> {
        /// Entries written before it go (Unix ms).
        cutoff_ms: u64,
        contact: &'a str,
    }
}

script_keys! {
    /// `consent.lua`: the contact's consent ledger and its shard's
    /// statistics of the day.
    ConsentKeys { consent, stats }
}

script_args! {
    /// The ARGV of `consent.lua`.
    ConsentArgs<'a> {
        /// The ledger entry (JSON).
        entry: String,
        /// The counter it adds, or empty.
        counter: &'a str,
        stats_ttl: u64,
    }
}

script_keys! {
    /// `unlink.lua`: an alias's link.
    UnlinkKeys { link }
}

script_args! {
    /// The ARGV of `unlink.lua`.
    UnlinkArgs<'a> {
        /// The canonical contact the link must still name.
        canonical: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Keys;
    use super::*;

    #[test]
    fn the_erasure_s_counts_point_at_the_contact_s_own_keys_and_its_campaign_marks() {
        let k = |name: &str| name.to_owned();
        let keys = EraseKeys {
            inbox: k("inbox"),
            outbox: k("outbox"),
            session: k("session"),
            profile: k("profile"),
            history: k("history"),
            consent: k("consent"),
            deliveries: k("deliveries"),
            window: k("window"),
            dead: k("dead"),
            head: k("head"),
            inbox_lease: k("inbox_lease"),
            outbox_lease: k("outbox_lease"),
            data_key: k("data_key"),
            data_key_was: k("data_key_was"),
            last_campaign: k("last_campaign"),
            campaigns: k("campaigns"),
            inbox_ready: k("inbox_ready"),
            outbox_ready: k("outbox_ready"),
            timers: k("timers"),
            due: k("due"),
            dead_index: k("dead_index"),
            history_index: k("history_index"),
            stats: k("stats"),
        };
        let all = keys.keys();
        assert_eq!(all[EraseKeys::CAMPAIGNS_AT - 1], "campaigns");
        assert_eq!(all[EraseKeys::OWN - 1], "campaigns");
        assert_eq!(all[EraseKeys::OWN], "inbox_ready");
        assert_eq!(all.last(), Some(&"stats"));
    }
}
