//! The admin credential: a console session is bound to the credential
//! that opened it, so changing the credential (SIGHUP) ends every session
//! at once, on every instance sharing the store.

#![cfg(unix)]

use std::time::{Duration, Instant};

use crate::console::sign_in_at;
use crate::helpers::{ADMIN_TOKEN, Backend, test_env};
use crate::process::Server;

const NEW_TOKEN: &str = "rotated-admin-token-4d8e1f0a9b7c6d5e3f2a";

fn settings(token: &str) -> String {
    format!("[admin]\ntoken = \"{token}\"\n")
}

/// The admin token comes from the settings file (SIGHUP re-reads it).
fn env_without_token(backend: &Backend) -> Vec<(String, String)> {
    let mut env = test_env(backend, &[]);
    env.retain(|(k, _)| k != "WHATSIFY__ADMIN__TOKEN");
    env
}

/// The status of `GET path` with the session cookie, or with a bearer.
async fn status(server: &Server, path: &str, cookie: Option<&str>, bearer: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(server.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Waits (bounded) until `GET path` as given answers `want`.
async fn until(server: &Server, path: &str, cookie: Option<&str>, bearer: Option<&str>, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = status(server, path, cookie, bearer).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, not {want}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rotates the token of `server` and waits until the new one is in force.
async fn rotate(server: &Server) {
    server.rewrite_settings(&settings(NEW_TOKEN));
    server.sighup();
    until(server, "/admin/stats", None, Some(NEW_TOKEN), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_admin_token_ends_console_sessions_on_every_instance_at_once() {
    let b = crate::helpers::redis();
    let env = env_without_token(&b.backend);
    let one = Server::start(env.clone(), Some(&settings(ADMIN_TOKEN))).await;
    let two = Server::start(env, Some(&settings(ADMIN_TOKEN))).await;
    let (cookie, _) = sign_in_at(&one.url("")).await;
    for server in [&one, &two] {
        assert_eq!(
            status(server, "/console/api/overview", Some(&cookie), None).await,
            200
        );
    }
    // Only the first instance is told; the second still has the old token
    // in force, yet the session is over there too.
    rotate(&one).await;
    assert_eq!(
        status(&one, "/console/api/overview", Some(&cookie), None).await,
        401
    );
    until(&two, "/console/api/overview", Some(&cookie), None, 401).await;
    assert_eq!(
        status(&two, "/admin/stats", None, Some(ADMIN_TOKEN)).await,
        200,
        "the second instance was not reloaded"
    );
    // A session opened with the old token on the instance not yet reloaded
    // does not open on the one that was.
    let (stale, _) = sign_in_at(&two.url("")).await;
    assert_eq!(
        status(&one, "/console/api/overview", Some(&stale), None).await,
        401
    );
    rotate(&two).await;
    assert_eq!(
        status(&two, "/console/api/overview", Some(&stale), None).await,
        401
    );
    assert!(
        one.log().contains("console sessions ended"),
        "{}",
        one.log()
    );
    for server in [&one, &two] {
        assert!(!server.log().contains(NEW_TOKEN) && !server.log().contains(ADMIN_TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_admin_token_ends_console_sessions_on_the_embedded_store() {
    let b = crate::helpers::embedded();
    let server = Server::start(env_without_token(&b.backend), Some(&settings(ADMIN_TOKEN))).await;
    let (cookie, _) = sign_in_at(&server.url("")).await;
    assert_eq!(
        status(&server, "/console/api/overview", Some(&cookie), None).await,
        200
    );
    rotate(&server).await;
    assert_eq!(
        status(&server, "/console/api/overview", Some(&cookie), None).await,
        401
    );
}
