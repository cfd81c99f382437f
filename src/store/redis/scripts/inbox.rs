//! The inbox's scripts: `append.lua` (every queue's append) and
//! `merge.lua` + `commit.lua` (a claim's commit).

use super::{Sink, counters};

script_keys! {
    /// `append.lua`: a contact's queue has all of them, an outbox queue
    /// the first five, the system queues the first two.
    AppendKeys {
        seen, stream;
        /// The shard's ready set of the queue's lane.
        ready?, consent?, data_key?,
        /// The shard's statistics of the day.
        stats?, last_campaign?,
        /// The shard's campaign counters prefix (`P{s:N}:cmp:`).
        campaign_prefix?
    }
}

script_keys! {
    /// `merge.lua` + `commit.lua`.
    CommitKeys {
        lease, inbox, session, outbox, window, deliveries, consent, inbox_ready,
        outbox_ready, timers, profile, history, history_index, stats, data_key,
        campaign_prefix, campaigns, last_campaign
    }
}

/// The ARGV of `append.lua`.
pub(in crate::store::redis) struct AppendArgs<'a> {
    /// How long the seen mark is kept (s).
    pub dedup_ttl: u64,
    pub sealed: &'a [u8],
    /// How long the stream lives after this append (s).
    pub stream_ttl: u64,
    /// The ready mark's score (Unix ms).
    pub now_ms: u64,
    /// The contact (the ready sets' member), or empty.
    pub contact: &'a str,
    /// The consent entry (JSON), or empty.
    pub consent: &'a str,
    /// The wrapped data key the entry is sealed under, or empty.
    pub data_key: &'a [u8],
    /// The data key is new: stored unless one is there (`'1'`/`'0'`).
    pub fresh_key: bool,
    /// The data key's time to live (s).
    pub key_ttl: u64,
    /// The counter the consent entry adds, or empty.
    pub counter: &'a str,
    pub stats_ttl: u64,
    pub campaign_ttl: u64,
    /// The event as it reads when its grant is refused, or empty.
    pub refused: &'a [u8],
    /// How many grants of a purpose are recorded within `grant_window`.
    pub grants_per_window: usize,
    /// The window of `grants_per_window` (s).
    pub grant_window: u64,
}

impl AppendArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.put(self.dedup_ttl);
        out.put(self.sealed);
        out.put(self.stream_ttl);
        out.put(self.now_ms);
        out.put(self.contact);
        out.put(self.consent);
        out.put(self.data_key);
        out.put(if self.fresh_key { "1" } else { "0" });
        out.put(self.key_ttl);
        out.put(self.counter);
        out.put(self.stats_ttl);
        out.put(self.campaign_ttl);
        out.put(self.refused);
        out.put(self.grants_per_window);
        out.put(self.grant_window);
    }
}

/// The ARGV of `commit.lua`: sixteen values, then the lists (each counted
/// in the head), then the counters, then the TTL and the data key.
pub(in crate::store::redis) struct CommitArgs<'a> {
    /// The lease holder's token.
    pub token: &'a str,
    /// The session's time to live (s).
    pub session_ttl: u64,
    /// Two values: `'1'` and the session, or `'0'` and empty (`None`
    /// deletes the session).
    pub session: Option<&'a [u8]>,
    /// The inbox entry ids taken (removed).
    pub acked: &'a [String],
    /// The sealed jobs queued to the outbox.
    pub jobs: &'a [Vec<u8>],
    /// Two values: the business number and the customer's last message
    /// time (Unix s); an empty number (and 0) writes none.
    pub window: (String, u64),
    /// Four values per delivery record (see `record_args`).
    pub deliveries: Vec<[String; 4]>,
    /// The consent entries (JSON).
    pub consent: Vec<String>,
    pub contact: &'a str,
    /// The ready and history marks' score (Unix ms).
    pub now_ms: u64,
    /// The session's timer (Unix s), or `None` to cancel it.
    pub timer: Option<u64>,
    /// `None` leaves the profile as it is.
    pub profile: Option<&'a [u8]>,
    /// The profile's and the history's time to live, and the data key's
    /// less two days (s).
    pub profile_ttl: u64,
    /// The sealed history entries added.
    pub history: &'a [Vec<u8>],
    /// The counters of the day (name, amount): sent as their number,
    /// `stats_ttl`, then the pairs.
    pub counts: &'a [(String, u64)],
    pub stats_ttl: u64,
    pub campaign_ttl: u64,
    /// The wrapped data key the claim was sealed under, or empty.
    pub data_key: &'a [u8],
}

impl CommitArgs<'_> {
    pub fn args(&self, out: &mut impl Sink) {
        out.put(self.token);
        out.put(self.session_ttl);
        out.put(if self.session.is_some() { "1" } else { "0" });
        out.put(self.session.unwrap_or(b""));
        out.put(self.acked.len());
        out.put(self.jobs.len());
        out.put(&self.window.0);
        out.put(self.window.1);
        out.put(self.deliveries.len());
        out.put(self.consent.len());
        out.put(self.contact);
        out.put(self.now_ms);
        out.put(self.timer.map(|t| t.to_string()).unwrap_or_default());
        out.put(self.profile.unwrap_or(b""));
        out.put(self.profile_ttl);
        out.put(self.history.len());
        for id in self.acked {
            out.put(id);
        }
        for job in self.jobs {
            out.put(&job[..]);
        }
        for record in &self.deliveries {
            for value in record {
                out.put(value);
            }
        }
        for change in &self.consent {
            out.put(change);
        }
        for item in self.history {
            out.put(&item[..]);
        }
        counters(out, self.counts, self.stats_ttl);
        out.put(self.campaign_ttl);
        out.put(self.data_key);
    }
}
