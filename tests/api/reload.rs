//! Flows reload when their files change or on SIGHUP; an invalid change is
//! refused and the old flows keep answering.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::graph::{FakeGraph, describe};
use crate::helpers::{embedded, fresh_fixture, spawn_app_running};

fn copy_flows(to: &Path) {
    for f in std::fs::read_dir("flows").expect("flows") {
        let p = f.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
        }
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_flow_file_is_reloaded_and_an_invalid_one_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_flows(dir.path());
    let graph = FakeGraph::start().await;
    let b = embedded();
    let app = spawn_app_running(
        &b.backend,
        &[
            ("WHATSIFY__META__GRAPH_API_BASE", graph.base.clone()),
            ("WHATSIFY__FLOWS__DIR", dir.path().display().to_string()),
        ],
        1,
    )
    .await;
    let flows = app.state.flows.clone().expect("flows in the state");

    let welcome = dir.path().join("welcome.yaml");
    let text = std::fs::read_to_string(&welcome).expect("read");
    std::fs::write(
        &welcome,
        text.replace("What can we do for you today?", "How can we help?"),
    )
    .expect("write");
    until("the reload", || flows.generation() >= 1).await;
    assert_eq!(
        app.post_signed(&fresh_fixture("messages_text.json"))
            .await
            .status(),
        200
    );
    // A new contact: the privacy notice, the greeting, the menu.
    let sent = graph.wait_for(3).await;
    assert_eq!(
        describe(&sent[2].body),
        "buttons: How can we help? [See offers | Get help | My privacy]"
    );

    // A broken file: refused, the server stays up, the old flows answer.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "id: broken\nsteps:\n  - id: a\n    goto: nowhere\n",
    )
    .expect("write");
    until("the refused reload", || flows.failures() >= 1).await;
    assert_eq!(flows.generation(), 1);
    let again = crate::conversation::delivery(
        "16505550102",
        "Bob",
        "wamid.RELOAD2",
        serde_json::json!({"type": "text", "text": {"body": "hi"}}),
    );
    assert_eq!(app.post_signed(&again).await.status(), 200);
    let sent = graph.wait_for(6).await;
    assert_eq!(
        describe(&sent[5].body),
        "buttons: How can we help? [See offers | Get help | My privacy]"
    );
    graph.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_flows_of_the_running_binary() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("temp dir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("mkdir");
    copy_flows(&flows);
    let b = embedded();
    let port = crate::helpers::free_port();
    let mut env = crate::helpers::test_env(&b.backend, &[]);
    env.retain(|(k, _)| k != "WHATSIFY__SERVER__BIND");
    env.push(("WHATSIFY__SERVER__BIND".into(), format!("127.0.0.1:{port}")));
    env.push(("WHATSIFY__FLOWS__DIR".into(), flows.display().to_string()));
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").expect("write");
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_whatsify"))
        .args(["serve", "--config"])
        .arg(&config)
        .envs(env)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("starts");
    until("the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    until("the reload log line", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("flows reloaded") && l.contains("signal"))
    })
    .await;
    // Still serving after the signal.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn serve_refuses_to_start_with_invalid_flows_and_says_where() {
    let b = embedded();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy("tests/flows/base.yaml", dir.path().join("base.yaml")).expect("copy");
    std::fs::copy(
        "tests/flows/broken/unknown_step.yaml",
        dir.path().join("unknown_step.yaml"),
    )
    .expect("copy");
    let err = crate::helpers::try_spawn_app_workers(
        &b.backend,
        &[("WHATSIFY__FLOWS__DIR", dir.path().display().to_string())],
        1,
    )
    .await
    .err()
    .expect("must not start");
    let msg = err.to_string();
    assert!(
        msg.contains("unknown_step.yaml:6:11: unknown step `nowhere`"),
        "{msg}"
    );
}
