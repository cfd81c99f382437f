//! What the server shows, and to whom: `/metrics` and readiness's details
//! need the admin credential on `server.bind` and are open on the
//! `server.ops_bind` listener (which serves nothing else); `/healthz` is
//! open everywhere. With `console.secure_cookie` the session cookie is
//! always `Secure` and every answer carries `Strict-Transport-Security`.

#![cfg(unix)]

use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, Backend, free_port, spawn_app_with, test_env};
use crate::process::Server;

async fn get(url: String, bearer: bool) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if bearer {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_details_need_the_credential_or_the_ops_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops_port = free_port();
    let env = test_env(
        &Backend::Embedded(dir.path().join("data")),
        &[(
            "WHATSIFY__SERVER__OPS_BIND",
            format!("127.0.0.1:{ops_port}"),
        )],
    );
    let server = Server::start(env, None).await;
    let ops = |path: &str| format!("http://127.0.0.1:{ops_port}{path}");

    // The main listener: health and readiness's status for anyone.
    assert_eq!(get(server.url("/healthz"), false).await.0, 200);
    let (status, body) = get(server.url("/readyz"), false).await;
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready, serde_json::json!({"status": "ready"}), "no details");
    let (status, body) = get(server.url("/readyz"), true).await;
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert!(
        ready["paused"].is_array(),
        "details with the credential: {ready}"
    );
    // Metrics only with the credential.
    assert_eq!(get(server.url("/metrics"), false).await.0, 401);
    let (status, text) = get(server.url("/metrics"), true).await;
    assert_eq!(status, 200);
    assert!(text.contains("whatsify_"), "{text}");

    // The operations listener: open, and only these three.
    assert_eq!(get(ops("/healthz"), false).await.0, 200);
    let (status, body) = get(ops("/readyz"), false).await;
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert!(ready["paused"].is_array(), "{ready}");
    let (status, text) = get(ops("/metrics"), false).await;
    assert_eq!(status, 200);
    assert!(text.contains("whatsify_"), "{text}");
    for path in ["/admin/stats", "/console", "/webhook"] {
        assert_eq!(
            get(ops(path), true).await.0,
            404,
            "{path} on the ops listener"
        );
    }
}

fn hsts(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("strict-transport-security")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn sign_in(address: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{address}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("sign in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cookie_setting_forces_secure_and_strict_transport_security() {
    let b = crate::helpers::embedded();
    let on = spawn_app_with(
        &b.backend,
        &[("WHATSIFY__CONSOLE__SECURE_COOKIE", "true".to_owned())],
    )
    .await;
    let resp = sign_in(&on.address).await;
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("Secure"), "plain http, forced: {cookie}");
    assert!(hsts(&resp).is_some_and(|h| h.contains("max-age=31536000")));
    assert!(hsts(&on.get("/healthz").await).is_some(), "on every answer");
    on.stop().await;

    // Bound to loopback, the default is off.
    let b = crate::helpers::embedded();
    let off = spawn_app_with(&b.backend, &[]).await;
    let resp = sign_in(&off.address).await;
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert_eq!(hsts(&resp), None);
    off.stop().await;
}
