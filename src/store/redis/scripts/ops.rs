//! The operations' scripts: `rate.lua`, `hold.lua` and `probe.lua`.

script_keys! {
    /// `rate.lua`: a rate limit's key.
    RateKeys { rate }
}

script_args! {
    /// The ARGV of `rate.lua` (GCRA).
    RateArgs {
        /// The time between two slots (µs).
        interval_us: u64,
        /// How many slots may be taken at once.
        burst: u32,
        /// How many slots the caller wants.
        want: u32,
    }
}

script_keys! {
    /// `hold.lua`: a rate limit's key.
    HoldKeys { rate }
}

script_args! {
    /// The ARGV of `hold.lua`.
    HoldArgs {
        /// How long no slot is given (ms from now).
        hold_ms: u64,
    }
}

script_keys! {
    /// `probe.lua`: the breakers' probe times.
    ProbeKeys { probe }
}

script_args! {
    /// The ARGV of `probe.lua`.
    ProbeArgs<'a> {
        /// The paused business number (the hash's field).
        number: &'a str,
        /// The probe is due when its time is at or before this.
        now: u64,
        /// When the probe after this one may go.
        next: u64,
    }
}
