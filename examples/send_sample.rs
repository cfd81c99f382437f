//! Sends one fixture to a running whatsify, signed the way Meta signs it,
//! and prints the answer.
//!
//! ```text
//! cargo run --example send_sample -- fixtures/messages_text.json
//! cargo run --example send_sample -- fixtures/batch_mixed.json http://127.0.0.1:8080/webhook
//! ```
//! The app secret comes from `WHATSIFY__META__APP_SECRET`, or from
//! `.dev-secrets.env` as written by `scripts/serve`.

use whatsify::crypto::signature::sign;

fn secret() -> Option<String> {
    if let Ok(s) = std::env::var("WHATSIFY__META__APP_SECRET")
        && !s.is_empty()
    {
        return Some(s);
    }
    let file = std::fs::read_to_string(".dev-secrets.env").ok()?;
    file.lines()
        .filter_map(|l| l.trim().strip_prefix("export WHATSIFY__META__APP_SECRET="))
        .map(|v| v.trim_matches('\'').to_owned())
        .next()
}

/// The delivery with each message's `timestamp` set to now (unchanged
/// when it is not JSON).
fn fresh(body: Vec<u8>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    for entry in v["entry"].as_array_mut().into_iter().flatten() {
        for change in entry["changes"].as_array_mut().into_iter().flatten() {
            for m in change["value"]["messages"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                m["timestamp"] = serde_json::json!(now);
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or(body)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .unwrap_or_else(|| "fixtures/messages_text.json".into());
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/webhook".into());
    let Some(secret) = secret() else {
        eprintln!(
            "set WHATSIFY__META__APP_SECRET (or run scripts/serve once to create .dev-secrets.env)"
        );
        return std::process::ExitCode::from(2);
    };
    let body = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Meta's examples carry old timestamps, and whatsify gives no flow
    // answer to a message more than 24 hours old: date the messages now.
    let body = fresh(body);
    let signature = sign(&secret, &body);
    println!(
        "POST {url}  ({} bytes, X-Hub-Signature-256: {signature})",
        body.len()
    );
    match reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status();
            println!("{status} {}", resp.text().await.unwrap_or_default());
            if status.is_success() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("request failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
