//! What an erasure costs on Redis: the contact leaves every waiting
//! campaign's audience by key (`HDEL`), whatever the audience's size; no
//! command of the erasure reads an audience (checked with `MONITOR` on a
//! Redis this test owns, so it sees every command, those run by the
//! store's scripts included).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use secrecy::SecretString;
use whatsify::config::{Backend as Kind, StoreSettings};
use whatsify::domain::ContactKey;

use crate::helpers::RedisServer;

/// Commands that read a whole list, hash, set or range.
const READS_MANY: [&str; 12] = [
    "LRANGE", "LREM", "LPOS", "HGETALL", "HVALS", "HKEYS", "HSCAN", "SMEMBERS", "SSCAN", "SORT",
    "ZRANGE", "SCAN",
];

fn contact(n: usize) -> ContactKey {
    ContactKey::parse(&format!("{:032x}", n as u128 + 0xfeed_0000)).expect("key")
}

/// The commands `MONITOR` shows: (name, arguments).
fn parse(line: &str) -> Option<(String, Vec<String>)> {
    let quoted = regex::Regex::new(r#""((?:[^"\\]|\\.)*)""#).expect("regex");
    let rest = &line[line.find("] ")? + 2..];
    let mut words = quoted
        .captures_iter(rest)
        .map(|c| c[1].to_owned())
        .collect::<Vec<_>>()
        .into_iter();
    let name = words.next()?.to_ascii_uppercase();
    Some((name, words.collect()))
}

/// The commands each campaign's keys saw, by name, sorted (a script's
/// invocation left out: the commands it runs are listed themselves, and
/// the first one may be sent twice, before and after loading the script).
fn touching(commands: &[(String, Vec<String>)], campaign: &str) -> Vec<String> {
    let tag = format!("{{cmp:{campaign}}}");
    let mut names: Vec<String> = commands
        .iter()
        .filter(|(name, _)| name != "EVALSHA" && name != "EVAL")
        .filter(|(_, args)| args.iter().any(|a| a.contains(&tag)))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_contact_does_not_read_any_audience() {
    let server = RedisServer::start();
    let store = whatsify::store::open(&StoreSettings {
        backend: Kind::Redis,
        path: "unused".into(),
        redis_url: SecretString::from(server.url()),
        redis_ca_file: None,
        key_prefix: "wte:".into(),
    })
    .await
    .expect("store opens");
    let gone = contact(1_500);
    let entry = |n: usize| format!("{}|sealed-{n}", contact(n)).into_bytes();
    let big: Vec<Vec<u8>> = (0..5_000).map(entry).collect();
    let small: Vec<Vec<u8>> = [1, 1_500, 3].into_iter().map(entry).collect();
    for (id, audience) in [("big", big), ("small", small)] {
        store
            .create_campaign(id, b"{}", audience)
            .await
            .expect("create");
    }
    // Every command Redis runs from now on, until the marker.
    let mut monitor = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    monitor
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    monitor.write_all(b"MONITOR\r\n").expect("monitor");
    let mut lines = BufReader::new(monitor.try_clone().expect("clone")).lines();
    assert_eq!(lines.next().expect("answer").expect("read"), "+OK");
    store
        .erase(&gone, &whatsify::domain::BusinessId::default_business(), 1)
        .await
        .expect("erase");
    let mut marker = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    marker
        .write_all(b"ECHO whatsify-erasure-done\r\n")
        .expect("echo");
    let mut commands = Vec::new();
    for line in lines {
        let line = line.expect("a MONITOR line within 30 s");
        if line.contains("whatsify-erasure-done") {
            break;
        }
        if let Some(c) = parse(&line) {
            commands.push(c);
        }
    }
    let on_big = touching(&commands, "big");
    assert!(
        !on_big.is_empty(),
        "the erasure saw the campaign: {commands:?}"
    );
    for (name, args) in &commands {
        let audience = args.iter().any(|a| a.contains("{cmp:"));
        assert!(
            !(audience && READS_MANY.contains(&name.as_str())),
            "{name} {args:?} reads an audience"
        );
    }
    // The same commands for 5,000 entries as for 3.
    assert_eq!(on_big, touching(&commands, "small"));
    // And the contact is out of both, the others still in.
    let left = store.campaign_audience("big", 10_000).await.expect("read");
    assert_eq!(left.len(), 4_999);
    let prefix = whatsify::store::audience_prefix(&gone);
    assert!(!left.iter().any(|e| e.starts_with(&prefix)));
    assert_eq!(store.campaign_left("big").await.expect("left"), 4_999);
    assert_eq!(store.campaign_left("small").await.expect("left"), 2);
}

/// An audience stored by an older version (one list of entries) is read
/// as it was, and moved to the keyed form on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_audience_list_is_still_dispatched() {
    let server = RedisServer::start();
    let store = whatsify::store::open(&StoreSettings {
        backend: Kind::Redis,
        path: "unused".into(),
        redis_url: SecretString::from(server.url()),
        redis_ca_file: None,
        key_prefix: "wto:".into(),
    })
    .await
    .expect("store opens");
    let entries: Vec<Vec<u8>> = (0..3)
        .map(|n| format!("{}|sealed-{n}", contact(n)).into_bytes())
        .collect();
    let client = redis::Client::open(server.url()).expect("url");
    let mut c = client.get_connection().expect("connect");
    let () = redis::cmd("RPUSH")
        .arg("wto:{cmp:old}:audience")
        .arg(entries.clone())
        .query(&mut c)
        .expect("rpush");
    assert_eq!(store.campaign_left("old").await.expect("left"), 3);
    assert_eq!(
        store.campaign_audience("old", 10).await.expect("read"),
        entries
    );
    let old: bool = redis::cmd("EXISTS")
        .arg("wto:{cmp:old}:audience")
        .query(&mut c)
        .expect("exists");
    assert!(!old, "moved to the keyed form");
    assert_eq!(store.campaign_left("old").await.expect("left"), 3);
    assert_eq!(
        store.campaign_audience("old", 2).await.expect("read"),
        entries[..2]
    );
}
