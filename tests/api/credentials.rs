//! The admin credential: a console session is bound to the credential
//! that opened it, so changing the credential (SIGHUP) ends every session
//! at once, on every instance sharing the store.

#![cfg(unix)]

use std::time::{Duration, Instant};

use crate::console::sign_in_at;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, spawn_app, test_env};
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

/// A client whose requests come from `127.0.0.<last>`.
fn from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn bearer(app: &TestApp, client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .get(format!("{}/admin/stats", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

/// Guesses from fresh addresses (127.0.0.10 on) until one is refused:
/// the overall allowance is spent. It comes back one guess per
/// `OVERALL_REFILL`, so on a slow machine more than its 30 may be needed.
async fn spend_the_overall_allowance(app: &TestApp, guess: &str) {
    for n in 10..90u8 {
        if bearer(app, &from(n), guess).await.status() == 429 {
            return;
        }
    }
    panic!("80 guesses from 80 addresses were never refused");
}

async fn guessing_the_admin_token_is_slowed_down_and_audited(backend: &Backend) {
    let app = spawn_app(backend).await;
    let guess = "a-guess-at-the-admin-token-0000000000";
    let (guesser, operator) = (from(1), from(2));
    for n in 1..=5 {
        let r = bearer(&app, &guesser, guess).await;
        assert_eq!(r.status(), 401, "guess {n}");
    }
    // Spent: even the right token waits, so a right guess teaches nothing.
    for token in [guess, ADMIN_TOKEN] {
        let r = bearer(&app, &guesser, token).await;
        assert_eq!(r.status(), 429);
        let after: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&after), "Retry-After {after}");
    }
    let r = guesser
        .post(format!("{}/console/sign-in", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 429, "the sign-in form waits too");
    assert!(r.headers().contains_key("retry-after"));
    // Another address is not held up by this one.
    assert_eq!(bearer(&app, &operator, ADMIN_TOKEN).await.status(), 200);
    // Many addresses together: after the overall allowance, a fresh one
    // waits too, while an address that signed in recently goes on.
    // (The allowance refills continuously, one guess per 5 s: a check
    // that lands just as a guess came back is tried again, from another
    // fresh address.)
    let mut refused = false;
    for n in 0..5u8 {
        spend_the_overall_allowance(&app, guess).await;
        if bearer(&app, &from(200 + n), ADMIN_TOKEN).await.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a fresh address with the right token was let in");
    assert_eq!(bearer(&app, &operator, ADMIN_TOKEN).await.status(), 200);
    // Sign-in failures count too.
    let mut refused = false;
    for n in 0..5u8 {
        spend_the_overall_allowance(&app, guess).await;
        let wrong_sign_in = from(210 + n)
            .post(format!("{}/console/sign-in", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={guess}"))
            .send()
            .await
            .expect("sign in");
        if wrong_sign_in.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the overall allowance is spent, yet a sign-in was tried"
    );

    // Audited, without what was tried.
    let r = operator
        .get(format!(
            "{}/admin/audit?kind=admin_auth_failed",
            app.address
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    let audit: serde_json::Value = serde_json::from_str(&text).expect("json");
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.len() >= 30,
        "each counted failure is audited: {}",
        entries.len()
    );
    assert!(
        entries.iter().all(|e| e["kind"] == "admin_auth_failed"),
        "{text}"
    );
    assert!(
        !text.contains(guess),
        "the guessed token is in the audit log"
    );
    assert!(
        !text.contains("127.0.0."),
        "a client address in clear: {text}"
    );
    app.stop().await;
}
crate::both_backends!(
    guessing,
    guessing_the_admin_token_is_slowed_down_and_audited
);
