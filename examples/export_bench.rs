//! How long MY DATA takes to build for a contact with a long history:
//! seeds one contact with N messages (half in, half out) through the
//! store's own commit path, then builds its export the way the sender does
//! (decrypting every message) and serialises it.
//!
//! ```sh
//! cargo run --release --example export_bench -- --messages 10000
//! cargo run --release --example export_bench -- --messages 10000 --redis redis://127.0.0.1:6391/0
//! ```

use std::time::{Duration, Instant};

use secrecy::SecretString;
use whatsify::config::{Backend, Key32, StoreSettings};
use whatsify::crypto::seal::Sealer;
use whatsify::domain::ContactKey;
use whatsify::privacy::export::{Direction, HistoryItem, build, history_context};
use whatsify::store::{Commit, InboxEntry, Lane, Queue};

#[tokio::main]
async fn main() {
    let mut messages = 10_000usize;
    let mut redis: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value after each option");
        match a.as_str() {
            "--messages" => messages = v.parse().expect("--messages N"),
            "--redis" => redis = Some(v),
            other => panic!("unknown option {other}"),
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("exportbench:{}:", uuid::Uuid::new_v4());
    let settings = match &redis {
        Some(url) => StoreSettings {
            backend: Backend::Redis,
            path: "unused".into(),
            redis_url: SecretString::from(url.as_str()),
            redis_ca_file: None,
            key_prefix: prefix,
        },
        None => StoreSettings {
            backend: Backend::Embedded,
            path: dir.path().join("data"),
            redis_url: SecretString::from(""),
            redis_ca_file: None,
            key_prefix: String::new(),
        },
    };
    let store = whatsify::store::open(&settings).await.expect("store");
    let sealer = Sealer::new(&Key32::new([3; 32]));
    let contact = ContactKey::parse("0123456789abcdef0123456789abcdef").expect("key");

    let seeding = Instant::now();
    let batch = 500;
    for start in (0..messages).step_by(batch) {
        store
            .append(vec![InboxEntry {
                queue: Queue::Contact(contact.clone()),
                dedup: format!("seed-{start}"),
                sealed: b"x".to_vec(),
                consent: None,
                refused: None,
                key: None,
            }])
            .await
            .expect("append");
        let claim = store
            .claim(Lane::Inbox, &contact, "seed", Duration::from_secs(60), 10)
            .await
            .expect("claim")
            .expect("free");
        let history = (start..(start + batch).min(messages))
            .map(|i| {
                let item = HistoryItem {
                    at: 1_800_000_000 + i as u64,
                    direction: if i % 2 == 0 {
                        Direction::In
                    } else {
                        Direction::Out
                    },
                    kind: "text".into(),
                    text: Some(format!(
                        "message number {i}: a line of the length customers write on WhatsApp"
                    )),
                    job: (i % 2 == 1).then(|| format!("job-{i}")),
                };
                sealer
                    .seal(
                        &serde_json::to_vec(&item).expect("json"),
                        &history_context(&contact),
                    )
                    .expect("seal")
            })
            .collect();
        store
            .commit(
                &claim,
                Commit {
                    acked: claim.entries.iter().map(|e| e.id.clone()).collect(),
                    session: None,
                    session_ttl: Duration::from_secs(60),
                    outbox: Vec::new(),
                    wake_at: None,
                    window: None,
                    deliveries: Vec::new(),
                    consent: Vec::new(),
                    profile: None,
                    history,
                    profile_ttl: Duration::from_secs(3600),
                    stats: Vec::new(),
                },
            )
            .await
            .expect("commit");
    }
    println!(
        "seeded {messages} messages in {:.2}s ({})",
        seeding.elapsed().as_secs_f64(),
        if redis.is_some() { "redis" } else { "embedded" }
    );

    let started = Instant::now();
    let doc = build(
        store.as_ref(),
        Some(&sealer),
        &contact,
        "16505550101",
        365,
        &[],
        1_800_100_000,
    )
    .await
    .expect("export");
    let built = started.elapsed();
    let bytes = serde_json::to_vec_pretty(&doc).expect("json");
    let total = started.elapsed();
    let n = doc["messages"].as_array().map_or(0, Vec::len);
    println!(
        "export of {n} messages: built in {:.1} ms, serialised in {:.1} ms more, {} KB",
        built.as_secs_f64() * 1000.0,
        (total - built).as_secs_f64() * 1000.0,
        bytes.len() / 1024
    );
    assert_eq!(n, messages, "every message is in the export");
}
