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

/// What SIGHUP re-reads besides the flows: the settings file's access
/// token. A new token closes every breaker (sending resumes at once).
pub struct TokenReload {
    pub config_file: Option<PathBuf>,
    pub token: crate::outbox::graph::SharedToken,
    /// Weak: the watcher must not keep a stopped application's store open.
    pub store: std::sync::Weak<dyn crate::store::Store>,
    pub breakers: crate::outbox::sender::breakers::Breakers,
    /// To sweep for the outboxes made due at once.
    pub wake: crate::shutdown::Wakeups,
    /// The master keys in force: a rotated key is put in force, and the
    /// data keys are rewrapped under it.
    pub keyring: crate::crypto::keyring::Keyring,
    /// The id of the pseudonym key in force, which must not change.
    pub pepper_id: [u8; 4],
    /// The app secrets webhooks are verified with, the verify token, the
    /// admin token, the campaigns' limits and `outbox.*`: put in force at
    /// once (a request under way keeps what it read).
    pub verifier: crate::config::Live<crate::crypto::signature::SignatureVerifier>,
    pub verify_token: crate::config::Live<secrecy::SecretString>,
    pub admin_token: crate::config::Live<Option<secrecy::SecretString>>,
    pub campaign_limits: crate::config::Live<crate::campaign::Limits>,
    pub outbox: crate::config::Live<crate::config::OutboxSettings>,
}

impl TokenReload {
    pub async fn reload(&self) {
        let settings = match crate::config::Settings::load(self.config_file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "settings not reloaded; the current ones stay in force");
                return;
            }
        };
        self.reload_keys(&settings);
        let admin_changed = crate::http::session::credential_id(self.admin_token.get().as_ref())
            != crate::http::session::credential_id(settings.admin.token.as_ref());
        self.reload_settings(&settings);
        if admin_changed {
            self.end_console_sessions().await;
        }
        if !self.token.set(crate::outbox::graph::Tokens::of(&settings)) {
            return;
        }
        tracing::info!("access token reloaded; paused numbers resume");
        self.breakers.clear();
        let Some(store) = self.store.upgrade() else {
            return;
        };
        let closed = store.close_breaker(None).await;
        let woken = store.wake_deferred().await;
        if let Err(e) = closed.and(woken) {
            tracing::error!(error = %e, "cannot resume paused numbers; the next probe will");
        }
        self.wake.outbox.sweep_soon();
    }
}

impl TokenReload {
    /// The admin credential changed: every console session opened with the
    /// old one ends, on every instance that shares the store. (Each
    /// instance also refuses a session opened with another credential than
    /// its own, so one whose store write failed is still closed here.)
    async fn end_console_sessions(&self) {
        let Some(store) = self.store.upgrade() else {
            return;
        };
        match store.end_console_sessions().await {
            Ok(()) => tracing::info!("admin token changed; console sessions ended"),
            Err(e) => tracing::error!(
                error = %e,
                "admin token changed; console sessions not ended in the store (this instance refuses them)"
            ),
        }
    }

    /// Puts the reloadable settings in force: secrets (app secrets, verify
    /// and admin tokens) and limits (`outbox.*` but the worker and sender
    /// counts, which need a restart; the campaigns' share of the rate).
    fn reload_settings(&self, settings: &crate::config::Settings) {
        self.verifier
            .set(crate::crypto::signature::SignatureVerifier::new(
                settings.meta.app_secret.clone(),
                settings.meta.app_secret_previous.clone(),
            ));
        self.verify_token.set(settings.meta.verify_token.clone());
        self.admin_token.set(settings.admin.token.clone());
        self.campaign_limits
            .set(crate::campaign::Limits::of(settings));
        let mut outbox = settings.outbox.clone();
        let running = self.outbox.get();
        if (outbox.workers, outbox.senders) != (running.workers, running.senders) {
            tracing::warn!("outbox.workers and outbox.senders take effect at the next start");
        }
        outbox.workers = running.workers;
        outbox.senders = running.senders;
        self.outbox.set(outbox);
        tracing::info!("settings reloaded: app secrets, verify and admin tokens, outbox limits");
    }

    /// Puts new master keys in force (`whatsify rotate-key`), and starts a
    /// rewrap of the data keys under the new current key.
    fn reload_keys(&self, settings: &crate::config::Settings) {
        let secrets = match crate::privacy::keys::reload(settings) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "keys not reloaded; the current ones stay in force");
                return;
            }
        };
        if crate::crypto::keyring::key_id(&secrets.pseudonym_key) != self.pepper_id {
            tracing::error!(
                "privacy.pseudonym_key changed: refused (every contact would lose its data); the keys in force stay"
            );
            return;
        }
        if !self.keyring.replace(&secrets.master) {
            return;
        }
        tracing::info!(key_id = %self.keyring.current_id(), "master keys reloaded");
        let Some(store) = self.store.upgrade() else {
            return;
        };
        let keyring = self.keyring.clone();
        tokio::spawn(async move {
            crate::privacy::retention::rewrap(store.as_ref(), &keyring).await;
        });
    }
}

/// Watches `dir` and SIGHUP until the process stops. The SIGHUP handler
/// is installed when this is called (not when the future first runs), so
/// a signal right after start-up cannot kill the process.
pub fn watch(
    dir: PathBuf,
    flows: SharedFlows,
    token: Option<TokenReload>,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangup: Option<()> = None;
    watch_loop(dir, flows, token, hangup)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

async fn watch_loop(dir: PathBuf, flows: SharedFlows, token: Option<TokenReload>, hangup: Hangup) {
    let mut last = fingerprint(&dir);
    #[cfg(unix)]
    let mut hangup = hangup;
    #[cfg(not(unix))]
    let _ = hangup;
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
            if let Some(t) = &token {
                t.reload().await;
            }
        } else if now != last {
            last = now;
            reload(&dir, &flows, "change");
        }
    }
}
