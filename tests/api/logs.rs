//! The real binary at RUST_LOG=trace, fed the suite's traffic: its logs
//! hold no secret, token, phone number, name, username, user id or message
//! text.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use whatsify::crypto::signature::sign;

use crate::helpers::{
    ACCESS_TOKEN, APP_SECRET, Backend, MASTER_KEY, PHONE_NUMBERS, PREVIOUS_APP_SECRET, RedisServer,
    VERIFY_TOKEN, embedded, fixture, fixture_names, free_port, test_env,
};

const PERSONAL: [&str; 12] = [
    "Ana P",
    "Okafor",
    "Chlo",
    "@ana.perez",
    "@chloe.martin",
    "US.40917264830019283746",
    "GB.55019283746501928374",
    "FR.71820394857261039485",
    "3pm works",
    "damaged box",
    "London Eye",
    "Stop promotions",
];

async fn drive_traffic(base: &str) {
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, sig: Option<String>| {
        let mut req = client.post(format!("{base}/webhook")).body(body);
        if let Some(s) = sig {
            req = req.header("X-Hub-Signature-256", s);
        }
        req.send()
    };
    // Handshakes, good and bad (the token travels in the query string).
    for token in [VERIFY_TOKEN, "wrong-token-1234567"] {
        let url =
            format!("{base}/webhook?hub.mode=subscribe&hub.challenge=77&hub.verify_token={token}");
        client.get(url).send().await.expect("handshake");
    }
    for name in fixture_names() {
        let body = fixture(&name);
        let r = post(body.clone(), Some(sign(APP_SECRET, &body)))
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{name}");
        // Duplicates, bad signatures, the previous secret.
        post(body.clone(), Some(sign(APP_SECRET, &body)))
            .await
            .expect("post");
        post(body.clone(), Some(sign("not-the-secret-000", &body)))
            .await
            .expect("post");
        post(body.clone(), None).await.expect("post");
        post(body.clone(), Some(sign(PREVIOUS_APP_SECRET, &body)))
            .await
            .expect("post");
    }
    // A signed body we cannot read, full of personal data: quarantined.
    let odd = br#"{"object":"whatsapp_business_account","entry":[{"id":16505550101,"changes":"Bob Okafor 3pm works"}]}"#;
    let r = post(odd.to_vec(), Some(sign(APP_SECRET, odd)))
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let odd2 = br#"{"entry": "16505550102 Ana P\u00e9rez"#;
    post(odd2.to_vec(), Some(sign(APP_SECRET, odd2)))
        .await
        .expect("post");
    // Too large.
    let big = vec![b' '; 5 * 1024 * 1024];
    let _ = post(big.clone(), Some(sign(APP_SECRET, &big))).await;
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    // A path holding a phone number (an admin URL) is not logged.
    let r = client
        .get(format!("{base}/admin/contacts/16505550101"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "no admin token given");
}

/// With Redis stopped: 503s and a failing readiness check, logged too.
async fn drive_outage(base: &str, redis: &mut RedisServer) {
    let client = reqwest::Client::new();
    redis.stop();
    let body = fixture("messages_contacts.json");
    let r = client
        .post(format!("{base}/webhook"))
        .header("X-Hub-Signature-256", sign(APP_SECRET, &body))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 503);
    let r = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    redis.restart();
}

async fn logs_hold_nothing_personal(backend: &Backend, mut redis: Option<&mut RedisServer>) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").expect("write");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut env = test_env(backend, &[]);
    env.retain(|(k, _)| k != "WHATSIFY__SERVER__BIND");
    env.push(("WHATSIFY__SERVER__BIND".into(), format!("127.0.0.1:{port}")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_whatsify"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .envs(env)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drive_traffic(&base).await;
    if let Some(redis) = redis.as_deref_mut() {
        drive_outage(&base, redis).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log_path).expect("log");
    // The test must have seen real, detailed logs to mean anything.
    assert!(text.contains("webhook accepted"), "no request logs");
    assert!(text.contains("signature_mismatch"));
    assert!(text.contains("quarantined"));
    if redis.is_some() {
        assert!(
            text.contains("store_unavailable"),
            "the outage was not logged"
        );
    }
    assert!(text.contains("TRACE"), "not at trace level");
    assert!(
        text.lines().count() > 500,
        "too few lines: {}",
        text.lines().count()
    );
    let mut forbidden: Vec<&str> = vec![
        APP_SECRET,
        PREVIOUS_APP_SECRET,
        VERIFY_TOKEN,
        ACCESS_TOKEN,
        MASTER_KEY,
    ];
    forbidden.extend(PHONE_NUMBERS);
    forbidden.extend(PERSONAL);
    let leaks: Vec<String> = forbidden
        .iter()
        .filter(|needle| text.contains(*needle))
        .map(|needle| {
            let line = text
                .lines()
                .find(|l| l.contains(*needle))
                .unwrap_or_default();
            format!("{needle}: {}", &line[..line.len().min(300)])
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "personal data or secrets in the logs:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_on_the_embedded_store_hold_nothing_personal() {
    let b = embedded();
    logs_hold_nothing_personal(&b.backend, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_on_redis_hold_nothing_personal() {
    let mut server = RedisServer::start();
    let backend = Backend::Redis {
        url: server.url(),
        prefix: "logs:".into(),
    };
    logs_hold_nothing_personal(&backend, Some(&mut server)).await;
}
