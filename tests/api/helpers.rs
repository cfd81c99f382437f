//! The test harness: a real server on a free port, a real Redis (the one
//! `scripts/test` started, named by `WHATSIFY_TEST_REDIS_URL`, or a
//! throwaway `redis-server` started here), a fresh key prefix per test, and
//! a signer that signs bodies the way Meta does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use whatsify::config::Settings;
use whatsify::crypto::signature::sign;
use whatsify::domain::ContactId;
use whatsify::domain::inbound::InboxEvent;
use whatsify::startup::Application;
use whatsify::state::AppState;
use whatsify::store::{Queue, Store, StoredEntry};

pub const APP_SECRET: &str = "test-app-secret-5f2c9a1e7d";
pub const PREVIOUS_APP_SECRET: &str = "test-old-app-secret-8b3d0c";
pub const VERIFY_TOKEN: &str = "test-verify-token-c41f7a92";
pub const ACCESS_TOKEN: &str = "test-access-token-EAAG9f8e7d6c5b4a";
pub const ADMIN_TOKEN: &str = "test-admin-token-7c1e9b3a5d2f4e6a8b0c";
pub const MASTER_KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
/// The customers' numbers used across fixtures/ (see fixtures/README.md).
pub const PHONE_NUMBERS: [&str; 5] = [
    "16505550101",
    "16505550102",
    "16505550103",
    "447700900123",
    "5511955550199",
];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture whose messages were just sent: Meta's examples carry old
/// timestamps, and a message older than 24 hours gets no flow answer.
pub fn fresh_fixture(name: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).expect("json");
    let now = whatsify::clock::now_secs().to_string();
    if let Some(entries) = v["entry"].as_array_mut() {
        for e in entries {
            if let Some(changes) = e["changes"].as_array_mut() {
                for c in changes {
                    if let Some(ms) = c["value"]["messages"].as_array_mut() {
                        for m in ms {
                            m["timestamp"] = serde_json::json!(now);
                        }
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v).expect("json")
}

pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
            .expect("fixtures dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .filter(|n| n.ends_with(".json"))
            .collect();
    names.sort();
    names
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` this test owns; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `appendonly yes`, `appendfsync always`: what was acknowledged
    /// survives a kill -9 of Redis.
    durable: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A server that keeps what it acknowledged across a kill -9
    /// (`appendonly yes`, `appendfsync always`, as docs/operations.md says).
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
            durable,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_for_redis(&self.url());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 3-master Redis Cluster on loopback ports, owned by one test and
/// killed on drop: three `redis-server --cluster-enabled yes` joined by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on the port + 10000.
            let p = free_port();
            if p < 55_000
                && !ports.contains(&p)
                && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
            {
                ports.push(p);
            }
        }
        let mut children = Vec::new();
        for p in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test installs it)");
            children.push(child);
        }
        let cluster = RedisCluster {
            ports,
            children,
            _dir: dir,
        };
        for url in cluster.urls() {
            wait_for_redis(&url);
        }
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed with redis-server");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Every node must see every slot served before the test starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in cluster.urls() {
            let client = redis::Client::open(url.as_str()).expect("url");
            loop {
                let info: String = client
                    .get_connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// Each node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The nodes as `store.redis_url` takes them (commas between).
    pub fn redis_url(&self) -> String {
        self.urls().join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_redis(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = redis::Client::open(url).expect("url");
    while Instant::now() < deadline {
        if let Ok(mut c) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not come up at {url}");
}

/// A Redis for one test: the shared one under a fresh prefix, or a private
/// server. Keys under the prefix are deleted on drop.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    _own: Option<RedisServer>,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        let prefix = format!("wtest-{}:", uuid::Uuid::new_v4().simple());
        match std::env::var("WHATSIFY_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => TestRedis {
                url,
                prefix,
                _own: None,
            },
            _ => {
                let own = RedisServer::start();
                TestRedis {
                    url: own.url(),
                    prefix,
                    _own: Some(own),
                }
            }
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

#[derive(Clone, Debug)]
pub enum Backend {
    Embedded(PathBuf),
    Redis {
        url: String,
        prefix: String,
    },
    /// A Redis Cluster: `urls` lists its nodes, separated by commas.
    Cluster {
        urls: String,
        prefix: String,
    },
}

/// The environment a test server runs with.
pub fn test_env(backend: &Backend, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("WHATSIFY__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("WHATSIFY__META__APP_SECRET", APP_SECRET.to_owned()),
        (
            "WHATSIFY__META__APP_SECRET_PREVIOUS",
            PREVIOUS_APP_SECRET.to_owned(),
        ),
        ("WHATSIFY__META__VERIFY_TOKEN", VERIFY_TOKEN.to_owned()),
        ("WHATSIFY__META__ACCESS_TOKEN", ACCESS_TOKEN.to_owned()),
        ("WHATSIFY__PRIVACY__MASTER_KEY", MASTER_KEY.to_owned()),
        ("WHATSIFY__ADMIN__TOKEN", ADMIN_TOKEN.to_owned()),
        // Never Meta's real host from a test: a closed loopback port unless
        // a test points it at its fake Graph API.
        (
            "WHATSIFY__META__GRAPH_API_BASE",
            "http://127.0.0.1:9/v23.0".to_owned(),
        ),
    ];
    match backend {
        Backend::Embedded(path) => {
            env.push(("WHATSIFY__STORE__BACKEND", "embedded".into()));
            env.push(("WHATSIFY__STORE__PATH", path.display().to_string()));
        }
        Backend::Redis { url, prefix } => {
            env.push(("WHATSIFY__STORE__BACKEND", "redis".into()));
            env.push(("WHATSIFY__STORE__REDIS_URL", url.clone()));
            env.push(("WHATSIFY__STORE__KEY_PREFIX", prefix.clone()));
        }
        Backend::Cluster { urls, prefix } => {
            env.push(("WHATSIFY__STORE__BACKEND", "redis-cluster".into()));
            env.push(("WHATSIFY__STORE__REDIS_URL", urls.clone()));
            env.push(("WHATSIFY__STORE__KEY_PREFIX", prefix.clone()));
        }
    }
    for (k, v) in extra {
        env.push((k, v.clone()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A running server.
pub struct TestApp {
    pub address: String,
    pub state: actix_web::web::Data<AppState>,
    pub client: reqwest::Client,
    /// The workers' and senders' clock: tests move it forward.
    pub clock: whatsify::clock::Clock,
    handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// `GET {path}` on the admin API with the admin token; the JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        self.admin_json(reqwest::Method::GET, path).await
    }

    /// `method path` with the admin token: the status and the JSON answer
    /// (null when there is none).
    async fn admin_json(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `DELETE path` with the admin token: the status.
    pub async fn admin_delete(&self, path: &str) -> u16 {
        self.client
            .delete(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent")
            .status()
            .as_u16()
    }

    /// `DELETE path` with the admin token: the status and the JSON answer.
    pub async fn admin_delete_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.admin_json(reqwest::Method::DELETE, path).await
    }

    /// `POST path` with a JSON body and the admin token: the status and
    /// the JSON answer.
    pub async fn admin_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_raw(&self, body: Vec<u8>, signature: Option<String>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhook", self.address))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send().await.expect("request sent")
    }

    /// Posts `body` signed with the app secret, as Meta does.
    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        self.post_raw(body.to_vec(), Some(sign(APP_SECRET, body)))
            .await
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path_and_query))
            .send()
            .await
            .expect("request sent")
    }

    pub fn queue_of(&self, wa_id: &str) -> Queue {
        let id = ContactId::from_parts(Some(wa_id), None).expect("valid wa_id");
        Queue::Contact(self.state.pseudonymizer.contact_key(&id))
    }

    pub fn queue_of_user(&self, user_id: &str) -> Queue {
        let id = ContactId::from_parts(None, Some(user_id)).expect("valid user_id");
        Queue::Contact(self.state.pseudonymizer.contact_key(&id))
    }

    pub async fn entries(&self, queue: &Queue) -> Vec<StoredEntry> {
        self.store().read(queue, 10_000).await.expect("store read")
    }

    /// The contact's data key, as the application unwraps it.
    pub async fn sealer_of(
        &self,
        contact: &whatsify::domain::ContactKey,
    ) -> whatsify::crypto::seal::Sealer {
        let wrapped = self
            .store()
            .data_key(contact)
            .await
            .expect("store read")
            .expect("the contact has a data key");
        self.state
            .keyring
            .unwrap(contact, &wrapped)
            .expect("the data key unwraps under the master key")
    }

    /// Opens an entry of `queue`: a contact's under its data key, anything
    /// else under the master key.
    pub async fn open_entry(&self, queue: &Queue, sealed: &[u8]) -> Vec<u8> {
        let context = queue.name();
        match queue {
            Queue::Contact(k) | Queue::Outbox(k) => self
                .sealer_of(k)
                .await
                .open(sealed, context.as_bytes())
                .expect("the entry opens under the contact's data key"),
            _ => self
                .state
                .keyring
                .open_system(sealed, context.as_bytes())
                .expect("the entry opens under the master key"),
        }
    }

    /// The events of a queue, opened.
    pub async fn events(&self, queue: &Queue) -> Vec<InboxEvent> {
        let mut out = Vec::new();
        for e in self.entries(queue).await {
            let plain = self.open_entry(queue, &e.sealed).await;
            out.push(serde_json::from_slice(&plain).expect("inbox entry is an event"));
        }
        out
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: &Backend, extra: &[(&str, String)]) -> TestApp {
    try_spawn_app(backend, extra).await.expect("app builds")
}

pub async fn try_spawn_app(
    backend: &Backend,
    extra: &[(&str, String)],
) -> Result<TestApp, whatsify::startup::StartError> {
    try_spawn_app_workers(backend, extra, 0).await
}

/// A server with `workers` workers and senders running the flows.
pub async fn spawn_app_running(
    backend: &Backend,
    extra: &[(&str, String)],
    workers: usize,
) -> TestApp {
    try_spawn_app_workers(backend, extra, workers)
        .await
        .expect("app builds")
}

pub async fn try_spawn_app_workers(
    backend: &Backend,
    extra: &[(&str, String)],
    workers: usize,
) -> Result<TestApp, whatsify::startup::StartError> {
    try_spawn_app_with_file(backend, extra, "", workers).await
}

/// A server with a settings file (what the environment cannot say, such
/// as `[[integrations.webhooks]]`).
pub async fn try_spawn_app_with_file(
    backend: &Backend,
    extra: &[(&str, String)],
    toml: &str,
    workers: usize,
) -> Result<TestApp, whatsify::startup::StartError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("whatsify.toml");
    std::fs::write(&file, toml).expect("write");
    let settings = Settings::load_from(Some(&file), test_env(backend, extra)).expect("settings");
    let app = Application::build_with(&settings, workers).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    let clock = app.clock();
    tokio::spawn(app.run_until_stopped());
    Ok(TestApp {
        address,
        state,
        client: reqwest::Client::new(),
        clock,
        handle,
    })
}

/// A second server on the store another one uses (its workers should be
/// stopped first: `app.state.shutdown.trigger()`), with other settings.
pub async fn spawn_app_on_store(
    backend: &Backend,
    extra: &[(&str, String)],
    store: Arc<dyn Store>,
    workers: usize,
) -> TestApp {
    spawn_app_on_store_with_file(backend, extra, "", store, workers).await
}

/// As [`spawn_app_on_store`], with a settings file.
pub async fn spawn_app_on_store_with_file(
    backend: &Backend,
    extra: &[(&str, String)],
    toml: &str,
    store: Arc<dyn Store>,
    workers: usize,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("whatsify.toml");
    std::fs::write(&file, toml).expect("write");
    let settings = Settings::load_from(Some(&file), test_env(backend, extra)).expect("settings");
    Application::check_keys(&settings, store.as_ref())
        .await
        .expect("keys");
    let app =
        Application::build_with_pools(&settings, store, workers, workers).expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    let clock = app.clock();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        state,
        client: reqwest::Client::new(),
        clock,
        handle,
    }
}

/// A backend for one test, with whatever keeps it alive.
pub struct TestBackend {
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<TestRedis>,
}

pub fn embedded() -> TestBackend {
    let dir = tempfile::tempdir().expect("temp dir");
    TestBackend {
        backend: Backend::Embedded(dir.path().join("data")),
        _dir: Some(dir),
        _redis: None,
    }
}

pub fn redis() -> TestBackend {
    let r = TestRedis::new();
    TestBackend {
        backend: Backend::Redis {
            url: r.url.clone(),
            prefix: r.prefix.clone(),
        },
        _dir: None,
        _redis: Some(r),
    }
}

/// Runs async test bodies one after the other on a [`RedisCluster`], each
/// under its own key prefix.
#[macro_export]
macro_rules! on_cluster {
    ($cluster:expr, $($case:ident,)*) => {
        $(
            let backend = $crate::helpers::Backend::Cluster {
                urls: $cluster.redis_url(),
                prefix: format!("wt-cl-{}:", stringify!($case)),
            };
            $case(&backend).await;
        )*
    };
}

/// Runs an async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let b = $crate::helpers::embedded();
                super::$body(&b.backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let b = $crate::helpers::redis();
                super::$body(&b.backend).await;
            }
        }
    };
}
