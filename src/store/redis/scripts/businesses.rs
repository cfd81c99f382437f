//! The businesses role's scripts: `enlist.lua` and `forget.lua`.

script_keys! {
    /// `enlist.lua` and `forget.lua`: the shard's owner index and its
    /// per-business counts.
    OwnerKeys { owners, owned }
}

script_args! {
    /// The ARGV of `enlist.lua`.
    EnlistArgs<'a> {
        contact: &'a str,
        business: &'a str,
    }
}

script_args! {
    /// The ARGV of `forget.lua`.
    ForgetArgs<'a> {
        contact: &'a str,
    }
}
