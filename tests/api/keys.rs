//! Encryption at rest with per-contact data keys: each contact's values
//! are sealed under its own key, a ciphertext moved to another contact or
//! field does not open, and a new master key can be introduced while the
//! server runs (old data stays readable; the data keys are rewrapped).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use whatsify::config::Settings;
use whatsify::crypto::keyring::{Keyring, MasterKeys};
use whatsify::privacy::export::history_context;
use whatsify::privacy::keys::{self, Rotated};

use crate::both_backends;
use crate::graph::FakeGraph;
use crate::helpers::{
    ADMIN_TOKEN, APP_SECRET, Backend, TestApp, embedded, free_port, redis, spawn_app_on_store,
    test_env, try_spawn_app,
};
use crate::outbox::{app_with, contact_key, now, say_hi, sent_to, text_from, until};

const SECRET: &str = "my locker code is 90417";

/// The settings a test server of `backend` runs with.
fn settings(backend: &Backend, extra: &[(&str, String)]) -> Settings {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").expect("write");
    Settings::load_from(Some(&file), test_env(backend, extra)).expect("settings")
}

/// The value of `name = "..."` in TOML lines.
fn toml_value(lines: &str, name: &str) -> String {
    lines
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{name} in {lines}"))
        .to_owned()
}

async fn export_text(app: &TestApp, wa: &str) -> String {
    let (status, doc) = app.admin_get(&format!("/admin/contacts/{wa}/export")).await;
    assert_eq!(status, 200, "{doc}");
    doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn graph_env(graph: &FakeGraph) -> Vec<(&'static str, String)> {
    vec![
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
    ]
}

/// Two contacts get two data keys; their values are sealed under them, and
/// a value moved to the other contact, or to another field, does not open.
/// A new master key (with the old one still listed) reads everything; the
/// data keys are rewrapped under it in the background, after which the old
/// key can go.
async fn data_keys_and_master_key_rotation(backend: &Backend) {
    let graph = FakeGraph::start().await;
    let app = app_with(backend, &graph, &[]).await;
    let (ana, bob) = ("16505557001", "16505557002");
    say_hi(&app, ana, "wamid.K1").await;
    say_hi(&app, bob, "wamid.K2").await;
    let resp = app
        .post_signed(&text_from(ana, "wamid.K3", SECRET, now()))
        .await;
    assert_eq!(resp.status(), 200);
    until("both welcomes", 30, async || {
        !sent_to(&graph, ana).is_empty() && !sent_to(&graph, bob).is_empty()
    })
    .await;
    let store = app.store();
    let (ka, kb) = (contact_key(&app, ana), contact_key(&app, bob));
    until("the secret in the history", 30, async || {
        store.history(&ka, 10).await.is_ok_and(|h| h.len() >= 3)
    })
    .await;
    let wrapped_a = store.data_key(&ka).await.expect("read").expect("a key");
    let wrapped_b = store.data_key(&kb).await.expect("read").expect("a key");
    assert_ne!(wrapped_a, wrapped_b);
    let (sa, sb) = (app.sealer_of(&ka).await, app.sealer_of(&kb).await);
    let history = store.history(&ka, 10).await.expect("history");
    let (_, sealed) = &history[0];
    assert!(sa.open(sealed, &history_context(&ka)).is_ok());
    assert!(
        sb.open(sealed, &history_context(&ka)).is_err(),
        "another contact's key"
    );
    assert!(
        sa.open(sealed, &history_context(&kb)).is_err(),
        "moved to another contact"
    );
    assert!(
        sa.open(sealed, &whatsify::domain::profile::profile_context(&ka))
            .is_err(),
        "moved to another field"
    );
    let old = Keyring::new(&MasterKeys {
        current: settings(backend, &[])
            .privacy
            .master_key
            .expect("configured"),
        previous: Vec::new(),
    });

    // `whatsify rotate-key` with configured keys: the settings to deploy.
    let Rotated::Settings { new_id, lines } =
        keys::rotate(&settings(backend, &[])).expect("rotate")
    else {
        panic!("the keys are configured, not in a file");
    };
    assert_ne!(new_id, app.state.keyring.current_id());
    let rotated: Vec<(&str, String)> = vec![
        (
            "WHATSIFY__PRIVACY__MASTER_KEY",
            toml_value(&lines, "master_key"),
        ),
        (
            "WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS",
            toml_value(&lines, "master_key_previous"),
        ),
        (
            "WHATSIFY__PRIVACY__PSEUDONYM_KEY",
            toml_value(&lines, "pseudonym_key"),
        ),
    ];
    app.state.shutdown.trigger();
    let mut env = graph_env(&graph);
    env.extend(rotated.iter().cloned());
    let second = spawn_app_on_store(backend, &env, store.clone(), 2).await;
    assert_eq!(second.state.keyring.current_id(), new_id);
    assert_eq!(contact_key(&second, ana), ka, "the same pseudonyms");
    assert!(export_text(&second, ana).await.contains(SECRET));
    // The conversation goes on (this server had no copy of Ana's key).
    let before = sent_to(&graph, ana).len();
    say_hi(&second, ana, "wamid.K4").await;
    until("an answer after the rotation", 30, async || {
        sent_to(&graph, ana).len() > before
    })
    .await;
    // Rewrapped in the background: the old master key opens no data key.
    until("the rewrap", 30, async || {
        let a = store.data_key(&ka).await.ok().flatten();
        let b = store.data_key(&kb).await.ok().flatten();
        a.is_some_and(|w| old.unwrap(&ka, &w).is_err())
            && b.is_some_and(|w| old.unwrap(&kb, &w).is_err())
    })
    .await;
    let pass = keys::rewrap_all(store.as_ref(), &second.state.keyring)
        .await
        .expect("rewrap");
    assert_eq!((pass.rewrapped, pass.unreadable), (0, 0), "{pass:?}");
    assert!(pass.current >= 2, "{pass:?}");

    // The old key dropped: everything still reads.
    second.state.shutdown.trigger();
    let mut env = graph_env(&graph);
    env.extend(
        rotated
            .iter()
            .filter(|(k, _)| !k.ends_with("_PREVIOUS"))
            .cloned(),
    );
    let third = spawn_app_on_store(backend, &env, store.clone(), 2).await;
    assert!(!third.state.keyring.rotating());
    assert!(export_text(&third, ana).await.contains(SECRET));
}
both_backends!(rotation, data_keys_and_master_key_rotation);

#[tokio::test]
async fn the_redis_store_needs_a_master_key() {
    let b = redis();
    let err = try_spawn_app(
        &b.backend,
        &[("WHATSIFY__PRIVACY__MASTER_KEY", String::new())],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("privacy.master_key") && err.contains("WHATSIFY__PRIVACY__MASTER_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn rotating_needs_a_pinned_pseudonym_key() {
    let b = embedded();
    let key = crate::helpers::MASTER_KEY.to_owned();
    let err = try_spawn_app(
        &b.backend,
        &[("WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS", key)],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("privacy.pseudonym_key"), "{err}");
}

/// `whatsify serve` on the embedded store with no master key configured.
struct Serve {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl Serve {
    async fn start(dir: &Path, graph: &FakeGraph) -> Serve {
        let port = free_port();
        let mut env = test_env(&Backend::Embedded(dir.join("data")), &[]);
        env.retain(|(k, _)| k != "WHATSIFY__SERVER__BIND" && k != "WHATSIFY__PRIVACY__MASTER_KEY");
        env.push(("WHATSIFY__SERVER__BIND".into(), format!("127.0.0.1:{port}")));
        env.push(("WHATSIFY__META__GRAPH_API_BASE".into(), graph.base.clone()));
        env.push(("WHATSIFY__OUTBOX__MARK_READ".into(), "false".into()));
        let child = Command::new(env!("CARGO_BIN_EXE_whatsify"))
            .args(["serve", "--config"])
            .arg(dir.join("whatsify.toml"))
            .envs(env)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("log"))
                    .expect("log"),
            )
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve {
            child,
            port,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: &[u8]) {
        let resp = self
            .client
            .post(format!("http://127.0.0.1:{}/webhook", self.port))
            .header("Content-Type", "application/json")
            .header(
                "X-Hub-Signature-256",
                whatsify::crypto::signature::sign(APP_SECRET, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 200);
    }

    async fn export_text(&self, wa: &str) -> String {
        let doc: Value = self
            .client
            .get(format!(
                "http://127.0.0.1:{}/admin/contacts/{wa}/export",
                self.port
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        doc["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn stop(mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }
}

fn rotate_key(dir: &Path, extra: &[&str]) -> String {
    let mut env = test_env(&Backend::Embedded(dir.join("data")), &[]);
    env.retain(|(k, _)| k != "WHATSIFY__PRIVACY__MASTER_KEY");
    let out = Command::new(env!("CARGO_BIN_EXE_whatsify"))
        .args(["rotate-key", "--config"])
        .arg(dir.join("whatsify.toml"))
        .args(extra)
        .envs(env)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// With no master key configured, the embedded store makes its own key
/// file (mode 0600) with a master key and a separate pseudonym key;
/// `whatsify rotate-key` puts a new master key in it, SIGHUP puts it in
/// force while the server runs, the data keys are rewrapped, and once the
/// old key is gone from the file everything still reads.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_key_file_and_rotate_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("whatsify.toml"), "").expect("config");
    let graph = FakeGraph::start().await;
    let wa = "16505557010";
    let serve = Serve::start(dir.path(), &graph).await;
    let key_file = dir.path().join("data").join("keys.toml");
    let mode = std::fs::metadata(&key_file)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&key_file).expect("read");
    assert_ne!(
        toml_value(&first, "master_key"),
        toml_value(&first, "pseudonym_key"),
        "a separate pepper"
    );
    serve.post(&text_from(wa, "wamid.F1", "hi", now())).await;
    serve.post(&text_from(wa, "wamid.F2", SECRET, now())).await;
    until("two answers", 30, async || sent_to(&graph, wa).len() >= 2).await;
    assert!(serve.export_text(wa).await.contains(SECRET));

    let said = rotate_key(dir.path(), &[]);
    assert!(said.contains("new master key"), "{said}");
    let second = std::fs::read_to_string(&key_file).expect("read");
    assert_eq!(
        toml_value(&second, "master_key_previous"),
        toml_value(&first, "master_key")
    );
    assert_eq!(
        toml_value(&second, "pseudonym_key"),
        toml_value(&first, "pseudonym_key")
    );
    serve.signal("-HUP");
    until("the rewrap", 30, async || {
        std::fs::read_to_string(dir.path().join("log"))
            .is_ok_and(|l| l.contains("data keys rewrapped"))
    })
    .await;
    let before = sent_to(&graph, wa).len();
    serve.post(&text_from(wa, "wamid.F3", "hi", now())).await;
    until("an answer under the new key", 30, async || {
        sent_to(&graph, wa).len() > before
    })
    .await;
    assert!(serve.export_text(wa).await.contains(SECRET));
    serve.stop();

    let said = rotate_key(dir.path(), &["--rewrap"]);
    assert!(
        said.contains("0 data keys rewrapped") && said.contains("0 cannot be unwrapped"),
        "{said}"
    );
    // Drop the old key from the file: still readable after a restart.
    let without = second.replace(
        &format!(
            "master_key_previous = \"{}\"",
            toml_value(&second, "master_key_previous")
        ),
        "master_key_previous = \"\"",
    );
    std::fs::write(&key_file, without).expect("write");
    let serve = Serve::start(dir.path(), &graph).await;
    let text = serve.export_text(wa).await;
    assert!(text.contains(SECRET), "{text}");
    serve.stop();
}

/// A server whose settings would name the contacts under another
/// pseudonym key than the store was written with refuses to start, and
/// says how to fix it.
#[tokio::test]
async fn a_store_refuses_other_keys() {
    let b = redis();
    let first = try_spawn_app(&b.backend, &[]).await;
    assert!(first.is_ok(), "the store is pinned to its keys");
    let other = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let err = try_spawn_app(&b.backend, &[("WHATSIFY__PRIVACY__MASTER_KEY", other)])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("pseudonym key") && err.contains("Restore"),
        "{err}"
    );
}

/// The embedded store's key file is made only for a new store: a store
/// pinned to other keys refuses it, and the file made is removed again.
#[tokio::test]
async fn a_key_file_is_not_made_for_a_store_written_under_another() {
    let b = embedded();
    let mut settings = settings(
        &b.backend,
        &[("WHATSIFY__PRIVACY__MASTER_KEY", String::new())],
    );
    let store = whatsify::store::open(&settings.store).await.expect("store");
    store.pin(keys::PEPPER_PIN, "0badc0de").await.expect("pin");
    let secrets = keys::load(&settings).expect("keys");
    assert!(secrets.key_file_created);
    let path = secrets.key_file.clone().expect("a key file");
    assert!(path.exists());
    let err = keys::check_store(store.as_ref(), &secrets)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("0badc0de"), "{err}");
    assert!(!path.exists(), "the new key file is removed again");
    // A reload never makes one.
    settings.privacy.pseudonym_key = None;
    let err = keys::reload(&settings)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("missing"), "{err}");
}

/// Data keys and a master-key rotation (the rewrap walks every node) on a
/// real 3-master Redis Cluster (issue 7, point 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_a_redis_cluster() {
    let cluster = crate::helpers::RedisCluster::start();
    crate::on_cluster!(cluster, data_keys_and_master_key_rotation,);
}
