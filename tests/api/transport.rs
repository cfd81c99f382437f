//! How whatsify talks to what it depends on: the Graph client follows no
//! redirect (a 3xx is retried, then dead-lettered with its status, and the
//! place it points at never hears from us); Redis over TLS (`rediss://`,
//! a single server and a cluster, trusting a private CA given by
//! `store.redis_ca_file`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use crate::graph::FakeGraph;
use crate::helpers::{Backend, free_port, spawn_app_running, try_spawn_app};
use crate::outbox::{say_hi, sent_to, until};

/// What one fake server received: (path, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A server that records every request and answers each with `answer`.
async fn recorder(
    answer: impl Fn(&HttpRequest) -> HttpResponse + Clone + Send + 'static,
) -> (u16, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        let answer = answer.clone();
        App::new().app_data(data.clone()).default_service(web::to(
            move |req: HttpRequest, _body: web::Bytes, seen: web::Data<Seen>| {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((req.path().to_owned(), auth));
                let resp = answer(&req);
                async move { resp }
            },
        ))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, seen, handle)
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// The Graph API answers 302 to another host: the reply is retried and
/// dead-lettered as "HTTP 302 (redirect not followed)", and the other
/// host receives nothing (the access token never reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_graph_api_is_not_followed() {
    let (elsewhere, elsewhere_seen, elsewhere_handle) =
        recorder(|_| HttpResponse::Ok().json(serde_json::json!({"messages": [{"id": "x"}]}))).await;
    let (graph, graph_seen, graph_handle) = recorder(move |req| {
        HttpResponse::Found()
            .insert_header((
                "Location",
                format!("http://127.0.0.1:{elsewhere}{}", req.path()),
            ))
            .finish()
    })
    .await;
    let b = crate::helpers::embedded();
    let app = spawn_app_running(
        &b.backend,
        &[
            (
                "WHATSIFY__META__GRAPH_API_BASE",
                format!("http://127.0.0.1:{graph}/v23.0"),
            ),
            ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
            ("WHATSIFY__OUTBOX__RETRY_BASE", "10ms".into()),
            ("WHATSIFY__OUTBOX__RETRY_CAP", "20ms".into()),
            ("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "2".into()),
        ],
        1,
    )
    .await;
    say_hi(&app, "16505554700", "wamid.R1").await;
    until("the replies dead-lettered", 30, async || {
        app.admin_get("/admin/outbox/dead-letters").await.1["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 3)
    })
    .await;
    let body = app.admin_get("/admin/outbox/dead-letters").await.1;
    let letters = body["dead_letters"].as_array().expect("list");
    for l in letters {
        assert_eq!(l["reason"], "HTTP 302 (redirect not followed)", "{body}");
        assert_eq!(l["attempts"], 2, "retried, then recorded: {body}");
    }
    let graph_got = graph_seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The privacy notice, the greeting and the menu.
    assert_eq!(graph_got.len(), 6, "three messages, two attempts each");
    assert!(graph_got.iter().all(|(path, auth)| {
        path.ends_with("/messages")
            && auth.as_deref() == Some(&format!("Bearer {}", crate::helpers::ACCESS_TOKEN))
    }));
    assert_eq!(
        count(&elsewhere_seen),
        0,
        "the redirect's target got nothing"
    );
    app.stop().await;
    graph_handle.stop(false).await;
    elsewhere_handle.stop(false).await;
}

/// A private CA and a server certificate it signed for 127.0.0.1 and
/// localhost, made with the openssl command (EC P-256, valid two days).
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=whatsify test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=localhost"],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        TestCa { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (PEM).
    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).expect("read CA")
    }

    /// `redis-server` arguments for TLS only (no plain port) with this
    /// server certificate; clients are not asked for one.
    fn server_args(&self, port: u16) -> Vec<String> {
        let path = |n: &str| self.path(n).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ]
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command must be installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Redis servers over TLS owned by one test; killed on drop.
struct TlsRedis {
    ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// One server, or with `cluster` three masters joined into a cluster
    /// (its bus over TLS too).
    fn start(ca: &TestCa, cluster: bool) -> TlsRedis {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < if cluster { 3 } else { 1 } {
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
            let mut cmd = Command::new("redis-server");
            cmd.args(ca.server_args(*p));
            if cluster {
                // With no plain port the bus port must be named.
                let bus = (p + 10_000).to_string();
                cmd.args(["--cluster-enabled", "yes", "--tls-cluster", "yes"])
                    .args(["--cluster-port", &bus])
                    .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                    .args(["--cluster-node-timeout", "5000"]);
            }
            let child = cmd
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test installs it)");
            children.push(child);
        }
        let redis = TlsRedis {
            ports,
            children,
            _dir: dir,
        };
        for p in &redis.ports {
            redis.wait_for(ca, *p, "PING", "PONG");
        }
        if cluster {
            let mut create = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(ca.path("ca.pem"))
                .args(["--cluster", "create"])
                .args(redis.ports.iter().map(|p| format!("127.0.0.1:{p}")))
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-cli must be installed with redis-server");
            // It waits for the nodes to join: bounded, not forever.
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = create.try_wait().expect("redis-cli") {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = create.kill();
                    panic!("redis-cli --cluster create did not finish");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(status.success(), "redis-cli --cluster create failed");
            for p in &redis.ports {
                redis.wait_for(ca, *p, "CLUSTER INFO", "cluster_state:ok");
            }
        }
        redis
    }

    /// Waits (bounded) until `command` answers text holding `expect`
    /// on `port`, over TLS.
    fn wait_for(&self, ca: &TestCa, port: u16, command: &str, expect: &str) {
        let info = redis::IntoConnectionInfo::into_connection_info(
            format!("rediss://127.0.0.1:{port}").as_str(),
        )
        .expect("url");
        let client = redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.ca_pem()),
            },
        )
        .expect("TLS client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut words = command.split(' ');
            let mut cmd = redis::cmd(words.next().unwrap_or("PING"));
            for w in words {
                cmd.arg(w);
            }
            let answer: String = client
                .get_connection()
                .and_then(|mut c| cmd.query(&mut c))
                .unwrap_or_default();
            if answer.contains(expect) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{command} on {port} never gave {expect}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes as `store.redis_url` takes them.
    fn redis_url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}/0"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A webhook in and the reply out through the fake Graph API, with the
/// store on Redis over TLS only (no plain port), trusting the test's CA.
async fn a_conversation_over_tls(backend: &Backend, ca: &TestCa) {
    let graph = FakeGraph::start().await;
    let ca_file = ca.path("ca.pem").display().to_string();
    let env = [
        ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
        ("WHATSIFY__OUTBOX__MARK_READ", "false".into()),
        ("WHATSIFY__STORE__REDIS_CA_FILE", ca_file),
    ];
    let app = spawn_app_running(backend, &env, 1).await;
    say_hi(&app, "16505554800", "wamid.TLS1").await;
    until("the reply", 30, async || {
        !sent_to(&graph, "16505554800").is_empty()
    })
    .await;
    app.stop().await;
    // Without the CA the server's certificate is not trusted: no start.
    let err = try_spawn_app(backend, &[])
        .await
        .err()
        .expect("a certificate from an unknown CA is refused")
        .to_string();
    assert!(!err.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_on_redis_over_tls() {
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, false);
    let backend = Backend::Redis {
        url: redis.redis_url(),
        prefix: "wtls:".into(),
    };
    a_conversation_over_tls(&backend, &ca).await;
    // `#insecure` (accept any certificate) is not built in.
    let insecure = Backend::Redis {
        url: format!("{}#insecure", redis.redis_url()),
        prefix: "wtls:".into(),
    };
    assert!(
        try_spawn_app(&insecure, &[]).await.is_err(),
        "#insecure is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_on_a_redis_cluster_over_tls() {
    let ca = TestCa::new();
    let redis = TlsRedis::start(&ca, true);
    let backend = Backend::Cluster {
        urls: redis.redis_url(),
        prefix: "wtlscl:".into(),
    };
    a_conversation_over_tls(&backend, &ca).await;
}
