//! The campaigns' scripts: `dispatch.lua`, `status.lua`, `lease.lua`
//! and the audience's (`audience_*.lua`, each but `audience_add.lua`
//! run after `audience_migrate.lua`).

use super::{Sink, flag};

script_keys! {
    /// `dispatch.lua`; `counters` is the shard's counters of the campaign.
    DispatchKeys { campaigns, data_key, outbox, outbox_ready, counters }
}

/// The ARGV of `dispatch.lua`.
pub(in crate::store::redis) struct DispatchArgs<'a> {
    /// The campaign's id.
    pub campaign: &'a str,
    /// The sealed job, or empty: the contact is skipped.
    pub job: &'a [u8],
    /// Why it is skipped (the counter `skipped:<reason>`), or empty.
    pub reason: &'a str,
    /// The wrapped data key the job is sealed under, or empty.
    pub data_key: &'a [u8],
    /// The data key is new: stored unless one is there (`'1'` or empty).
    pub fresh_key: bool,
    /// The data key's and the campaign marks' time to live (s).
    pub key_ttl: u64,
    /// The ready mark's score (Unix ms).
    pub now_ms: u64,
    pub contact: &'a str,
    /// The campaign counters' time to live (s).
    pub campaign_ttl: u64,
}

impl DispatchArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.campaign);
        out.one(self.job);
        out.one(self.reason);
        out.one(self.data_key);
        out.one(flag(self.fresh_key));
        out.one(self.key_ttl);
        out.one(self.now_ms);
        out.one(self.contact);
        out.one(self.campaign_ttl);
    }
}

script_keys! {
    /// `status.lua`: the campaign's record hash and its audience's keys
    /// (see `audience`), dropped when it is cancelled.
    StatusKeys { campaign, queue, members, old_list }
}

/// The ARGV of `status.lua`.
pub(in crate::store::redis) struct StatusArgs<'a> {
    /// The new status.
    pub to: &'a str,
    /// The statuses it may move from, one argument each.
    pub from: Vec<&'a str>,
}

impl StatusArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.to);
        for status in &self.from {
            out.one(*status);
        }
    }
}

script_keys! {
    /// `lease.lua`: a campaign's lease.
    LeaseKeys { lease }
}

script_args! {
    /// The ARGV of `lease.lua`.
    LeaseArgs<'a> {
        /// Who takes or renews it.
        owner: &'a str,
        /// How long it lasts (ms).
        lease_ms: u64,
    }
}

script_keys! {
    /// `audience_add.lua`: the audience's queue and members.
    AudienceAddKeys { queue, members }
}

/// The ARGV of `audience_add.lua`.
pub(in crate::store::redis) struct AudienceAddArgs<'a> {
    /// The keys' time to live (s).
    pub ttl_s: u64,
    /// (name, entry) pairs, two arguments each, in order.
    pub entries: Vec<(&'a [u8], &'a [u8])>,
}

impl AudienceAddArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.ttl_s);
        for (name, entry) in &self.entries {
            out.one(*name);
            out.one(*entry);
        }
    }
}

script_keys! {
    /// `audience_read.lua` and `audience_unlist.lua`: the audience's
    /// queue, members and an older version's list.
    AudienceKeys { queue, members, old_list }
}

script_args! {
    /// The ARGV of `audience_read.lua`.
    AudienceReadArgs {
        /// How many entries at most.
        limit: usize,
    }
}

script_args! {
    /// The ARGV of `audience_unlist.lua`.
    AudienceUnlistArgs<'a> {
        /// The contact's key: its member name.
        contact: &'a str,
    }
}

script_keys! {
    /// `audience_trim.lua`: the audience's keys and the campaign's lease.
    AudienceTrimKeys { queue, members, old_list, lease }
}

script_args! {
    /// The ARGV of `audience_trim.lua`.
    AudienceTrimArgs<'a> {
        /// Who must hold the lease.
        owner: &'a str,
        /// How many entries were dispatched (dropped from the front).
        consumed: usize,
    }
}
