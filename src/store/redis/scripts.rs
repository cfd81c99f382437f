//! Typed KEYS and ARGV for the Lua scripts in `lua/`: one struct per
//! script whose fields name its keys (and, for the long ones, its
//! arguments) in the order the script reads them; `keys()` and `args()`
//! yield them in that order, so no call site counts positions.

use redis::ToRedisArgs;

/// Where script arguments go: a script invocation, or a pipeline whose
/// last command is the script's `EVALSHA`.
pub(super) trait Sink {
    fn put<T: ToRedisArgs>(&mut self, arg: T);
}

impl Sink for redis::Pipeline {
    fn put<T: ToRedisArgs>(&mut self, arg: T) {
        self.arg(arg);
    }
}

impl Sink for redis::ScriptInvocation<'_> {
    fn put<T: ToRedisArgs>(&mut self, arg: T) {
        self.arg(arg);
    }
}

/// A script's KEYS, in order.
pub(super) trait Keys {
    fn keys(&self) -> Vec<&str>;

    /// Adds the keys to an invocation of the script.
    fn add_to(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for key in self.keys() {
            inv.key(key);
        }
    }
}

/// Declares the KEYS of a script: the fields, in `KEYS[1]`, `KEYS[2]`, …
/// order; a trailing `?` field is optional (the script checks `KEYS[n]`),
/// and optional fields must come last and be given as a prefix.
macro_rules! script_keys {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$fmeta:meta])* $field:ident),+ $(; $($(#[$ometa:meta])* $opt:ident?),+)? $(,)? }
    ) => {
        $(#[$meta])*
        pub(super) struct $name {
            $($(#[$fmeta])* pub $field: String,)+
            $($($(#[$ometa])* pub $opt: Option<String>,)+)?
        }

        impl Keys for $name {
            fn keys(&self) -> Vec<&str> {
                #[allow(unused_mut)]
                let mut out = vec![$(self.$field.as_str()),+];
                $($(out.extend(self.$opt.as_deref());)+)?
                out
            }
        }
    };
}

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
    /// `claim.lua`; `state` is the session (inbox) or the head job's retry
    /// state (outbox); `profile` for the inbox only.
    ClaimKeys { lease, stream, state, data_key; profile? }
}

script_keys! {
    /// `merge.lua` + `commit.lua`.
    CommitKeys {
        lease, inbox, session, outbox, window, deliveries, consent, inbox_ready,
        outbox_ready, timers, profile, history, history_index, stats, data_key,
        campaign_prefix, campaigns, last_campaign
    }
}

script_keys! {
    /// `merge.lua` + `finish.lua`.
    FinishKeys {
        lease, outbox, head, deliveries, dead, dead_index, consent, outbox_ready,
        due, stats, data_key, campaign_prefix, campaigns, last_campaign
    }
}

script_keys! {
    /// `defer.lua`.
    DeferKeys { lease, head, due, outbox_ready }
}

script_keys! {
    /// `release.lua`.
    ReleaseKeys { lease, outbox, outbox_ready, due }
}

script_keys! {
    /// `dispatch.lua`; `counters` is the shard's counters of the campaign.
    DispatchKeys { campaigns, data_key, outbox, outbox_ready, counters }
}

/// The ARGV of `append.lua`.
pub(super) struct AppendArgs<'a> {
    pub dedup_ttl: u64,
    pub sealed: &'a [u8],
    pub stream_ttl: u64,
    pub now_ms: u64,
    /// The contact (the ready sets' member), or empty.
    pub contact: &'a str,
    /// The consent entry (JSON), or empty.
    pub consent: &'a str,
    /// The wrapped data key the entry is sealed under, or empty.
    pub data_key: &'a [u8],
    pub fresh_key: bool,
    pub key_ttl: u64,
    /// The counter the consent entry adds, or empty.
    pub counter: &'a str,
    pub stats_ttl: u64,
    pub campaign_ttl: u64,
    /// The event as it reads when its grant is refused, or empty.
    pub refused: &'a [u8],
    pub grants_per_window: usize,
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
pub(super) struct CommitArgs<'a> {
    pub token: &'a str,
    pub session_ttl: u64,
    /// `None` deletes the session.
    pub session: Option<&'a [u8]>,
    pub acked: &'a [String],
    pub jobs: &'a [Vec<u8>],
    /// The business number and the customer's last message time, or empty.
    pub window: (String, u64),
    /// Four values per delivery record (see `record_args`).
    pub deliveries: Vec<[String; 4]>,
    /// The consent entries (JSON).
    pub consent: Vec<String>,
    pub contact: &'a str,
    pub now_ms: u64,
    /// The session's timer (Unix s), or `None` to cancel it.
    pub timer: Option<u64>,
    /// `None` leaves the profile as it is.
    pub profile: Option<&'a [u8]>,
    pub profile_ttl: u64,
    pub history: &'a [Vec<u8>],
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

/// The ARGV of `finish.lua`.
pub(super) struct FinishArgs<'a> {
    pub token: &'a str,
    /// The job's entry id in the outbox.
    pub entry: &'a str,
    /// The job's delivery record (see `record_args`).
    pub record: [String; 4],
    /// The dead letter, or empty.
    pub dead_letter: &'a [u8],
    pub now: u64,
    pub contact: &'a str,
    /// The consent entry (JSON), or empty.
    pub consent: String,
    pub release: bool,
    /// Other entry ids to remove.
    pub also: &'a [String],
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
        out.put(if self.release { "1" } else { "" });
        out.put(self.also.len());
        for other in self.also {
            out.put(other);
        }
        counters(out, self.counts, self.stats_ttl);
        out.put(self.campaign_ttl);
        out.put(self.data_key);
    }
}

/// The counters' part of commit's and finish's ARGV: how many, their TTL,
/// then (name, amount) per counter (read by `count` in `merge.lua`).
fn counters(out: &mut impl Sink, counts: &[(String, u64)], ttl: u64) {
    out.put(counts.len());
    out.put(ttl);
    for (name, n) in counts {
        out.put(name);
        out.put(*n);
    }
}
