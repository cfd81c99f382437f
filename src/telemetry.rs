//! Tracing setup: `RUST_LOG` filters (default `info`), `log.format`
//! chooses human-readable text or JSON lines, written to stderr.
//!
//! What may be logged: pseudonymous contact keys, keyed hashes of message
//! ids, counts, outcomes. Never phone numbers, names, message text, tokens
//! or secrets; a test runs the suite's traffic at `RUST_LOG=trace` and
//! searches the output for them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
