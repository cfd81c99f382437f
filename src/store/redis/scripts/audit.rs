//! The audit log's scripts: `audit.lua` (an append), `lapse.lua` and
//! `reset.lua` (the request index).

use super::Sink;

script_keys! {
    /// `audit.lua`.
    AuditKeys { head, log, requests, closed }
}

script_args! {
    /// The ARGV of `audit.lua`.
    AuditArgs<'a> {
        seq: u64,
        /// The hash of the entry before (the head's, unless the log is empty).
        prev: &'a str,
        hash: &'a str,
        /// The entry (JSON).
        entry: String,
        /// The entry's request op (`r`, `c`, `x` or empty; see
        /// `store::audit_index`).
        op: &'a str,
        /// Its request group (`<what>|<contact>`), or empty.
        group: String,
        /// How many closed entries to keep.
        closed_keep: usize,
    }
}

script_keys! {
    /// `lapse.lua`: the request index and the closed requests.
    LapseKeys { requests, closed }
}

script_args! {
    /// The ARGV of `lapse.lua`.
    LapseArgs<'a> {
        group: &'a str,
        /// The lapsed request's seq.
        seq: u64,
        /// How many closed entries to keep.
        closed_keep: usize,
    }
}

script_keys! {
    /// `reset.lua`.
    ResetKeys { head, requests, closed }
}

/// The ARGV of `reset.lua`.
pub(in crate::store::redis) struct ResetArgs {
    /// The head's seq the index was rebuilt up to.
    pub through: u64,
    /// The open groups (group, its lines): sent as their number, then
    /// two arguments each.
    pub groups: Vec<(String, String)>,
    /// The closed entries (seq, JSON), two arguments each.
    pub closed: Vec<(u64, String)>,
}

impl ResetArgs {
    pub fn args(&self, out: &mut impl Sink) {
        out.one(self.through);
        out.one(self.groups.len());
        for (group, lines) in &self.groups {
            out.one(group.as_str());
            out.one(lines.as_str());
        }
        for (seq, entry) in &self.closed {
            out.one(*seq);
            out.one(entry.as_str());
        }
    }
}
