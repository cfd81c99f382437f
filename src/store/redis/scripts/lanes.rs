//! The lanes' scripts: `claim.lua`, `release.lua`, `renew.lua` and
//! `sweep.lua`.

use super::{Keys, Sink, flag};

script_keys! {
    /// `claim.lua`; `state` is the session (inbox) or the head job's retry
    /// state (outbox); `profile` for the inbox only.
    ClaimKeys { lease, stream, state, data_key; profile? }
}

script_args! {
    /// The ARGV of `claim.lua`.
    ClaimArgs<'a> {
        /// The would-be holder's token.
        token: &'a str,
        /// How long the lease lasts (ms).
        lease_ms: u64,
        /// How many entries to read at most.
        limit: usize,
    }
}

script_keys! {
    /// `release.lua`.
    ReleaseKeys { lease, outbox, outbox_ready, due }
}

/// The ARGV of `release.lua`.
pub(in crate::store::redis) struct ReleaseArgs<'a> {
    /// The holder's token.
    pub token: &'a str,
    pub contact: &'a str,
    /// The claim is the outbox lane's: its due mark goes, and its ready
    /// mark with nothing queued (`'1'` or empty).
    pub outbox_lane: bool,
}

impl ReleaseArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.token);
        out.one(self.contact);
        out.one(flag(self.outbox_lane));
    }
}

/// The KEYS of `renew.lua`: leases of one shard (one slot), any number.
pub(in crate::store::redis) struct RenewKeys {
    pub leases: Vec<String>,
}

impl Keys for RenewKeys {
    fn keys(&self) -> Vec<&str> {
        self.leases.iter().map(String::as_str).collect()
    }
}

/// The ARGV of `renew.lua`.
pub(in crate::store::redis) struct RenewArgs<'a> {
    /// How long each lease lasts from now (ms).
    pub lease_ms: u64,
    /// The holder's token of each lease, in the order of its KEYS.
    pub tokens: Vec<&'a str>,
}

impl RenewArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.lease_ms);
        for token in &self.tokens {
            out.one(*token);
        }
    }
}

script_keys! {
    /// `sweep.lua`: a shard's ready set and timers (the inbox's timers or
    /// the outbox's due set) of one lane.
    SweepKeys { ready, timers }
}

script_args! {
    /// The ARGV of `sweep.lua`.
    SweepArgs {
        /// How many of each at most.
        limit: usize,
        /// Now, in the timers' scores' unit.
        now: u64,
    }
}
