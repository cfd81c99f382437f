//! Typed KEYS and ARGV for the Lua scripts in `lua/`: one struct per
//! script whose fields name its keys, and one whose fields name its
//! arguments, in the order the script reads them; `keys()` and `args()`
//! yield them in that order, so no call site counts positions. Each
//! script's header comment names its KEYS and ARGV by the same names.
//!
//! The files follow the store's roles: `inbox` (append, commit), `lanes`
//! (claim, release, renew, sweep), `outbox` (finish, defer, set_head,
//! wake), `contacts` (erase, purge, consent, unlink), `keys` (pin,
//! data_key, rewrap), `campaigns` (dispatch, status, lease, the audience
//! scripts), `audit` (audit, lapse, reset), `businesses` (enlist,
//! forget) and `ops` (rate, hold, probe).

use redis::{ToRedisArgs, ToSingleRedisArg};

/// Where script arguments go: a script invocation, or a pipeline whose
/// last command is the script's `EVALSHA`.
pub(super) trait Sink {
    fn put<T: ToRedisArgs>(&mut self, arg: T);

    /// Puts a value that is exactly one ARGV (never a list or an
    /// `Option`, which would move every position after it).
    fn one<T: ToSingleRedisArg>(&mut self, arg: T) {
        self.put(arg);
    }
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
        pub(in crate::store::redis) struct $name {
            $($(#[$fmeta])* pub $field: String,)+
            $($($(#[$ometa])* pub $opt: Option<String>,)+)?
        }

        impl $crate::store::redis::scripts::Keys for $name {
            fn keys(&self) -> Vec<&str> {
                #[allow(unused_mut)]
                let mut out = vec![$(self.$field.as_str()),+];
                $($(out.extend(self.$opt.as_deref());)+)?
                out
            }
        }
    };
}

/// Declares the ARGV of a script whose arguments are single values: the
/// fields, in `ARGV[1]`, `ARGV[2]`, … order, each exactly one argument
/// (the types must be `ToSingleRedisArg`). A script with counts, lists
/// or flags spelt its own way has a hand-written `args()` instead.
macro_rules! script_args {
    (
        $(#[$meta:meta])*
        $name:ident $(<$lt:lifetime>)? { $($(#[$fmeta:meta])* $field:ident: $ty:ty),+ $(,)? }
    ) => {
        $(#[$meta])*
        pub(in crate::store::redis) struct $name $(<$lt>)? {
            $($(#[$fmeta])* pub $field: $ty,)+
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// Puts the ARGV, one per field, in order.
            pub fn args(&self, out: &mut impl $crate::store::redis::scripts::Sink) {
                $($crate::store::redis::scripts::Sink::one(out, &self.$field);)+
            }
        }
    };
}

mod audit;
mod businesses;
mod campaigns;
mod contacts;
mod inbox;
mod keys;
mod lanes;
mod ops;
mod outbox;

pub(super) use audit::*;
pub(super) use businesses::*;
pub(super) use campaigns::*;
pub(super) use contacts::*;
pub(super) use inbox::*;
pub(super) use keys::*;
pub(super) use lanes::*;
pub(super) use ops::*;
pub(super) use outbox::*;

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

/// A script flag as the scripts that read `== '1'` have always been sent
/// it: `'1'`, or empty.
fn flag(on: bool) -> &'static str {
    if on { "1" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a script would be sent, as strings.
    #[derive(Default)]
    struct Sent(Vec<String>);

    impl Sink for Sent {
        fn put<T: ToRedisArgs>(&mut self, arg: T) {
            for a in arg.to_redis_args() {
                self.0.push(String::from_utf8_lossy(&a).into_owned());
            }
        }
    }

    script_keys! {
        Example { first, second; third?, fourth? }
    }

    script_args! {
        ExampleArgs<'a> { name: &'a str, ttl: u64, bytes: &'a [u8] }
    }

    #[test]
    fn keys_come_in_field_order_and_absent_optional_keys_are_left_out() {
        let mut keys = Example {
            first: "a".into(),
            second: "b".into(),
            third: Some("c".into()),
            fourth: None,
        };
        assert_eq!(keys.keys(), ["a", "b", "c"]);
        keys.third = None;
        assert_eq!(keys.keys(), ["a", "b"]);
    }

    #[test]
    fn declared_arguments_are_one_each_in_field_order() {
        let mut sent = Sent::default();
        ExampleArgs {
            name: "n",
            ttl: 7,
            bytes: b"",
        }
        .args(&mut sent);
        assert_eq!(sent.0, ["n", "7", ""]);
    }
}
