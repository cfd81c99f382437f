//! A campaign's audience on Redis, kept so that an erasure removes a
//! contact from it by key, in O(1), without reading the audience:
//!
//! | key | type |
//! |---|---|
//! | `P{cmp:<id>}:queue` | list of member names in dispatch order: a contact's pseudonymous key (or, for an entry that names none, the entry itself) |
//! | `P{cmp:<id>}:members` | hash: member name → the audience entry (`<contact>\|<sealed number and variables>`); a field leaves when dispatched, erased or cancelled |
//!
//! An erased contact's field goes at once (`HDEL`); its name stays in the
//! queue, holding nothing, until the dispatcher passes it (reads skip a
//! name without a field, the trim drops it). A contact is in an audience
//! once (the first entry counts). What is left to dispatch is the hash's
//! length. Both keys share the campaign's hash tag (one slot).
//!
//! Campaigns stored by an older version keep their audience as one list
//! of entries (`P{cmp:<id>}:audience`); the first read, trim or erasure
//! that meets one moves it into the two keys above (once, in the script
//! that met it).

use std::sync::LazyLock;

use redis::Script;

use super::StoreError;
use super::conn::Conn;
use super::scripts::{
    AudienceAddArgs, AudienceAddKeys, AudienceKeys, AudienceReadArgs, AudienceTrimArgs,
    AudienceTrimKeys, AudienceUnlistArgs, Keys,
};

/// The suffixes of a campaign's audience keys: the order, the entries,
/// and the single list of an older version.
pub const QUEUE: &str = ":queue";
pub const MEMBERS: &str = ":members";
pub const OLD_LIST: &str = ":audience";

/// The member name of an audience entry: the contact key before its `|`,
/// or the whole entry when it has none.
pub fn name_of(entry: &[u8]) -> &[u8] {
    entry
        .iter()
        .position(|b| *b == b'|')
        .map_or(entry, |bar| &entry[..bar])
}

/// `lua/audience_migrate.lua`: its header states its KEYS and ARGV.
const MIGRATE_LUA: &str = include_str!("lua/audience_migrate.lua");

/// `lua/audience_add.lua`: its header states its KEYS and ARGV.
static ADD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/audience_add.lua")));

/// `lua/audience_read.lua`: its header states its KEYS and ARGV.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MIGRATE_LUA}{}",
        include_str!("lua/audience_read.lua")
    ))
});

/// `lua/audience_trim.lua`: its header states its KEYS and ARGV.
static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MIGRATE_LUA}{}",
        include_str!("lua/audience_trim.lua")
    ))
});

/// `lua/audience_unlist.lua`: its header states its KEYS and ARGV.
static UNLIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MIGRATE_LUA}{}",
        include_str!("lua/audience_unlist.lua")
    ))
});

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The audience keys (from `RedisStore::audience_keys`) by name.
fn named(keys: &[String; 3]) -> AudienceKeys {
    let [queue, members, old_list] = keys.clone();
    AudienceKeys {
        queue,
        members,
        old_list,
    }
}

/// Adds `audience` (in order; a name already there is skipped), the keys
/// living `ttl_s`.
pub async fn add(
    conn: &mut Conn,
    keys: &[String; 3],
    audience: &[Vec<u8>],
    ttl_s: u64,
) -> Result<(), StoreError> {
    let [queue, members, _] = keys.clone();
    let keys = AudienceAddKeys { queue, members };
    for chunk in audience.chunks(1000) {
        let args = AudienceAddArgs {
            ttl_s,
            entries: chunk.iter().map(|e| (name_of(e), &e[..])).collect(),
        };
        let mut inv = ADD.prepare_invoke();
        keys.add_to(&mut inv);
        args.args(&mut inv);
        let _: i64 = inv.invoke_async(conn).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Up to `limit` entries from the front of what is left.
pub async fn read(
    conn: &mut Conn,
    keys: &[String; 3],
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut inv = READ.prepare_invoke();
    named(keys).add_to(&mut inv);
    AudienceReadArgs { limit }.args(&mut inv);
    inv.invoke_async(conn).await.map_err(unavailable)
}

/// Drops the first `consumed` entries if `owner` holds `lease`; answers
/// how many are left.
pub async fn trim(
    conn: &mut Conn,
    keys: &[String; 3],
    lease: &str,
    owner: &str,
    consumed: usize,
) -> Result<u64, StoreError> {
    let [queue, members, old_list] = keys.clone();
    let keys = AudienceTrimKeys {
        queue,
        members,
        old_list,
        lease: lease.to_owned(),
    };
    let mut inv = TRIM.prepare_invoke();
    keys.add_to(&mut inv);
    AudienceTrimArgs { owner, consumed }.args(&mut inv);
    inv.invoke_async(conn).await.map_err(unavailable)
}

/// Removes `contact`'s entry; answers how many went (0 or 1).
pub async fn unlist(conn: &mut Conn, keys: &[String; 3], contact: &str) -> Result<i64, StoreError> {
    let mut inv = UNLIST.prepare_invoke();
    named(keys).add_to(&mut inv);
    AudienceUnlistArgs { contact }.args(&mut inv);
    inv.invoke_async(conn).await.map_err(unavailable)
}

/// How many entries are left (an older version's list counted as it is).
pub async fn left(conn: &mut Conn, keys: &[String; 3]) -> Result<u64, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HLEN").arg(&keys[1]).cmd("LLEN").arg(&keys[2]);
    let (members, old): (u64, u64) = pipe.query_async(conn).await.map_err(unavailable)?;
    Ok(members + old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_named_by_its_contact_key() {
        assert_eq!(name_of(b"abc123|sealed|more"), b"abc123");
        assert_eq!(name_of(b"m0"), b"m0");
        assert_eq!(name_of(b"|x"), b"");
    }
}
