//! The keys' scripts: `pin.lua`, `data_key.lua` and `rewrap.lua`.

script_keys! {
    /// `pin.lua`.
    PinKeys { pin }
}

script_args! {
    /// The ARGV of `pin.lua`.
    PinArgs<'a> {
        /// Stored unless the pin has one.
        value: &'a str,
    }
}

script_keys! {
    /// `data_key.lua`: the contact's data key.
    DataKeyKeys { data_key }
}

script_args! {
    /// The ARGV of `data_key.lua`.
    DataKeyArgs<'a> {
        /// The wrapped key, stored unless one is there.
        wrapped: &'a [u8],
        /// Its time to live (s).
        ttl_s: u64,
    }
}

script_keys! {
    /// `rewrap.lua`: the contact's data key and its previous wrapping.
    RewrapKeys { data_key, data_key_was }
}

script_args! {
    /// The ARGV of `rewrap.lua`.
    RewrapArgs<'a> {
        /// The wrapping that must be the stored one.
        old: &'a [u8],
        /// Its replacement.
        new: &'a [u8],
        /// How long the previous wrapping is kept (s).
        keep_s: u64,
    }
}
