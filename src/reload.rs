//! Reloads the flows when a file under `flows.dir` changes (checked every
//! second) or on SIGHUP. A valid new set replaces the old one whole; an
//! invalid one is refused with its errors logged (file:line:col), and the
//! old set stays in force. Sessions whose step disappeared restart their
//! flow (the engine handles that).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::flow::SharedFlows;

/// How often the folder is checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// What the folder looks like: names, sizes and modification times.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    meta.is_file()
                        .then(|| (e.path(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Loads the folder and, when valid, puts it in force.
pub fn reload(dir: &Path, flows: &SharedFlows, trigger: &str) -> bool {
    match crate::flow::load_dir(dir) {
        Ok(new) => {
            let n = new.flows.len();
            flows.replace(new);
            tracing::info!(trigger, flows = n, "flows reloaded");
            true
        }
        Err(errors) => {
            flows.record_failure();
            for e in &errors {
                tracing::error!(trigger, error = %e, "flow error");
            }
            tracing::error!(
                trigger,
                errors = errors.len(),
                "new flows refused; the previous flows stay in force"
            );
            false
        }
    }
}

/// Watches `dir` and SIGHUP until the process stops.
pub async fn watch(dir: PathBuf, flows: SharedFlows) {
    let mut last = fingerprint(&dir);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = match hangup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                _ = tokio::time::sleep(POLL) => false,
            },
            None => {
                tokio::time::sleep(POLL).await;
                false
            }
        };
        #[cfg(not(unix))]
        let signalled = {
            tokio::time::sleep(POLL).await;
            false
        };
        let now = fingerprint(&dir);
        if signalled {
            last = now;
            reload(&dir, &flows, "signal");
        } else if now != last {
            last = now;
            reload(&dir, &flows, "change");
        }
    }
}
