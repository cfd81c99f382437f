//! Sends one fixture to a running whatsify, signed the way Meta signs it,
//! and prints the answer.
//!
//! ```text
//! cargo run --example send_sample -- fixtures/messages_text.json
//! cargo run --example send_sample -- fixtures/batch_mixed.json http://127.0.0.1:8080/webhook
//! ```
//! The app secret comes from `WHATSIFY__META__APP_SECRET`, or from
//! `.dev-secrets.env` as written by `scripts/serve`.

use whatsify::webhook::signature::sign;

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
