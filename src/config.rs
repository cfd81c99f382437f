//! Typed settings: compiled defaults, then an optional TOML file, then
//! `WHATSIFY__SECTION__KEY` environment variables.
//!
//! Loading is two steps: the `config` crate merges the sources into
//! [`RawSettings`] (plain strings, as written), and [`RawSettings::validate`]
//! turns them into [`Settings`], where every secret is present, long enough,
//! and held in a type that never prints. A missing or weak secret is a
//! start-up error that names the key and its environment variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

pub mod console;
pub mod transport;

pub use console::ConsoleSettings;

/// The compiled defaults, in the same TOML form an operator writes.
pub const DEFAULTS_TOML: &str = r#"
[server]
bind = "127.0.0.1:8080"
max_body_bytes = 4194304
body_timeout = "30s"
ops_bind = ""

[meta]
app_secret = ""
app_secret_previous = ""
verify_token = ""
access_token = ""
graph_api_base = "https://graph.facebook.com/v23.0"
phone_number_id = ""

[store]
backend = "embedded"
path = "data"
redis_url = "redis://127.0.0.1:6379/0"
redis_ca_file = ""
key_prefix = "whatsify:"

[flows]
dir = "flows"
session_ttl = "24h"

[outbox]
messages_per_second = 80
max_attempts = 8
max_age = "4h"
retry_base = "1s"
retry_cap = "15m"
probe_interval = "60s"
pair_interval = "6s"
pair_burst = 3
mark_read = true
workers = 4
senders = 32
shutdown_grace = "25s"
unconfirmed_wait = "60s"
request_timeout = "30s"

[privacy]
master_key = ""
master_key_previous = ""
pseudonym_key = ""
policy_version = "1"
policy_notice = "We've updated our privacy policy. Reply PRIVACY to see how we use your data and what you can do about it."
retention_days = 365
erase_confirm_minutes = 10

[business]
name = ""
contact = ""

[admin]
token = ""

[log]
format = "text"
"#;

/// Shortest accepted length of a textual secret (app secret, tokens).
pub const MIN_SECRET_CHARS: usize = 16;
/// Shortest accepted admin token: it guards every contact's data.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings: {0}")]
    Source(#[from] config::ConfigError),
    #[error("{key} is missing: set it in the config file or the {env} environment variable")]
    Missing { key: &'static str, env: String },
    #[error("{key} is too short ({problem}): set a stronger value in the config file or {env}")]
    Weak {
        key: &'static str,
        env: String,
        problem: String,
    },
    #[error("{key} is invalid: {problem} (config file or {env})")]
    Invalid {
        key: &'static str,
        env: String,
        problem: String,
    },
    #[error("integrations.webhooks[{index}] ({name:?}) is invalid: {problem} (config file)")]
    Webhook {
        index: usize,
        name: String,
        problem: String,
    },
}

/// The environment variable that sets `section.key`.
pub fn env_var(key: &str) -> String {
    format!("WHATSIFY__{}", key.replace('.', "__").to_uppercase())
}

/// The settings as merged from the sources, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub server: ServerSettings,
    pub meta: RawMeta,
    pub store: RawStore,
    pub flows: FlowSettings,
    pub outbox: OutboxSettings,
    pub privacy: RawPrivacy,
    pub business: BusinessSettings,
    pub admin: RawAdmin,
    pub log: LogSettings,
    #[serde(default)]
    pub integrations: RawIntegrations,
    #[serde(default)]
    pub console: ConsoleSettings,
}

/// `[[integrations.webhooks]]`: the CRM and helpdesk receivers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegrations {
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    name: String,
    url: String,
    secret: SecretString,
    events: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

impl RawWebhook {
    fn validate(
        self,
        index: usize,
    ) -> Result<std::sync::Arc<crate::integrations::Subscriber>, ConfigError> {
        let name = self.name.clone();
        let invalid = |problem: String| ConfigError::Webhook {
            index,
            name: name.clone(),
            problem,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "name must be 1 to 64 letters, digits, - or _".into(),
            ));
        }
        let url: reqwest::Url = self
            .url
            .parse()
            .map_err(|_| invalid("url is not a URL".into()))?;
        let loopback = transport::is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(invalid(
                    "url must be https:// (plain http only to this machine)".into(),
                ));
            }
        }
        let key = crate::integrations::signing::key_of(self.secret.expose_secret())
            .map_err(|why| invalid(format!("secret: {why}")))?;
        if self.events.is_empty() {
            return Err(invalid("events is empty: list what it receives".into()));
        }
        let mut events = Vec::new();
        for e in &self.events {
            events.push(e.parse().map_err(invalid)?);
        }
        let mut fields = Vec::new();
        for f in &self.fields {
            fields.push(f.parse().map_err(invalid)?);
        }
        Ok(std::sync::Arc::new(crate::integrations::Subscriber {
            name: self.name,
            url,
            key: SecretBox::new(Box::new(key)),
            events,
            fields,
        }))
    }
}

/// Who the customers talk to, for the built-in HELP answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessSettings {
    /// The business name ("Acme Shoes"); empty: not named.
    pub name: String,
    /// How to reach a person ("call +1 555 0100, 9am-5pm"); empty: reply
    /// AGENT (the shipped support flow hands over to a person).
    pub contact: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub max_body_bytes: usize,
    /// How long a webhook body may take to arrive (then 408).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A second listener for `/healthz`, `/readyz` and `/metrics` only,
    /// open without a credential (empty: none; on `bind` they need the
    /// admin credential for their details).
    #[serde(default)]
    pub ops_bind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    app_secret: SecretString,
    app_secret_previous: SecretString,
    verify_token: SecretString,
    access_token: SecretString,
    graph_api_base: String,
    phone_number_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    backend: String,
    path: PathBuf,
    redis_url: SecretString,
    redis_ca_file: PathBuf,
    key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    pub dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// Per business number, across all instances.
    pub messages_per_second: u32,
    /// Tries of one message before it becomes a dead letter.
    pub max_attempts: u32,
    /// A message older than this is dropped (recorded), not sent late.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Full-jitter backoff: the first retry waits up to this, doubling.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// The longest wait between two tries.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// While a number's sending is paused (token refused), how often one
    /// message is tried.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Pacing of business-initiated messages to one customer (Meta's
    /// pair rate limit: about one per 6 s, small bursts allowed).
    #[serde(with = "humantime_serde")]
    pub pair_interval: Duration,
    pub pair_burst: u32,
    /// Mark each answered message as read (blue ticks).
    pub mark_read: bool,
    /// Workers (inbox → flows) per instance.
    pub workers: usize,
    /// Senders (outbox → Graph API) per instance.
    pub senders: usize,
    /// On SIGTERM, how long sends in flight may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A business-initiated message whose request got no answer (the
    /// process died, the request timed out) is sent again only when no
    /// status webhook for it came within this: Meta may have it.
    #[serde(with = "humantime_serde")]
    pub unconfirmed_wait: Duration,
    /// How long a Graph API request may take before it counts as
    /// unanswered (1 s to 30 s; the sender's lease is renewed meanwhile).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    master_key: SecretString,
    master_key_previous: SecretString,
    pseudonym_key: SecretString,
    policy_version: String,
    policy_notice: String,
    retention_days: u32,
    erase_confirm_minutes: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    token: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// A 32-byte key (master or pseudonym key). Never printed.
pub struct Key32(SecretBox<[u8; 32]>);

impl Key32 {
    pub fn new(bytes: [u8; 32]) -> Self {
        Key32(SecretBox::new(Box::new(bytes)))
    }
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for Key32 {
    fn clone(&self) -> Self {
        Key32::new(*self.expose())
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32([REDACTED])")
    }
}

/// Which store backend holds the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    /// A Redis Cluster; `store.redis_url` lists one or more of its nodes.
    RedisCluster,
}

/// Validated settings: what the rest of the program reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub meta: MetaSettings,
    pub store: StoreSettings,
    pub flows: FlowSettings,
    pub outbox: OutboxSettings,
    pub privacy: PrivacySettings,
    pub business: BusinessSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub console: ConsoleSettings,
    /// The CRM and helpdesk receivers (`[[integrations.webhooks]]`).
    pub integrations: Vec<std::sync::Arc<crate::integrations::Subscriber>>,
    /// The settings file these came from (SIGHUP re-reads it).
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MetaSettings {
    pub app_secret: SecretString,
    pub app_secret_previous: Option<SecretString>,
    pub verify_token: SecretString,
    pub access_token: SecretString,
    pub graph_api_base: String,
    pub phone_number_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub backend: Backend,
    pub path: PathBuf,
    pub redis_url: SecretString,
    /// A PEM file of the CA(s) that signed Redis' TLS certificate
    /// (`rediss://`): trusted instead of the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct PrivacySettings {
    /// Wraps the per-contact data keys. `None`: the embedded store keeps
    /// its own key file (the Redis store refuses to start).
    pub master_key: Option<Key32>,
    /// Older master keys, still accepted while data keys are rewrapped.
    pub master_key_previous: Vec<Key32>,
    /// Keyed hashes of contact ids; derived from the master key when unset
    /// (or, with the embedded key file, kept in it).
    pub pseudonym_key: Option<Key32>,
    pub policy_version: String,
    /// Sent once to each contact who writes in after `policy_version`
    /// changed.
    pub policy_notice: String,
    pub retention_days: u32,
    pub erase_confirm_minutes: u32,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The admin API and console are off when this is `None`.
    pub token: Option<SecretString>,
}

impl Settings {
    /// Loads settings from the defaults, `file` (or `whatsify.toml` in the
    /// working folder when present) and the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut s = Self::load_from(file, std::env::vars())?;
        s.config_file = file.map(Path::to_path_buf);
        Ok(s)
    }

    /// As [`Settings::load`], with the environment given (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        builder = match file {
            Some(path) => builder.add_source(config::File::from(path).required(true)),
            None => builder.add_source(config::File::with_name("whatsify.toml").required(false)),
        };
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WHATSIFY__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WHATSIFY")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        raw.validate()
    }
}

fn secret(key: &'static str, value: SecretString, min: usize) -> Result<SecretString, ConfigError> {
    let text = value.expose_secret();
    if text.is_empty() {
        return Err(ConfigError::Missing {
            key,
            env: env_var(key),
        });
    }
    let chars = text.chars().count();
    if chars < min {
        return Err(ConfigError::Weak {
            key,
            env: env_var(key),
            problem: format!("{chars} characters, at least {min} needed"),
        });
    }
    Ok(value)
}

fn optional_secret(
    key: &'static str,
    value: SecretString,
    min: usize,
) -> Result<Option<SecretString>, ConfigError> {
    if value.expose_secret().is_empty() {
        Ok(None)
    } else {
        secret(key, value, min).map(Some)
    }
}

fn key32(key: &'static str, value: &SecretString) -> Result<Option<Key32>, ConfigError> {
    let text = value.expose_secret().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ConfigError::Invalid {
            key,
            env: env_var(key),
            problem: "not valid base64 (make one with `openssl rand -base64 32`)".into(),
        })?;
    let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| ConfigError::Weak {
        key,
        env: env_var(key),
        problem: format!("{} bytes, exactly 32 needed", v.len()),
    })?;
    Ok(Some(Key32::new(bytes)))
}

/// `meta.graph_api_base`, without a trailing `/`: https, or plain http
/// only to this machine (the access token is sent there).
fn graph_api_base(value: &str) -> Result<String, ConfigError> {
    let base = value.trim_end_matches('/');
    transport::secure_url(base).map_err(|problem| ConfigError::Invalid {
        key: "meta.graph_api_base",
        env: env_var("meta.graph_api_base"),
        problem,
    })?;
    Ok(base.to_owned())
}

/// `store.redis_ca_file`: empty is none; set, every node of
/// `store.redis_url` must be `rediss://` (a CA for a plain connection would
/// silently protect nothing).
fn redis_ca_file(url: &SecretString, file: PathBuf) -> Result<Option<PathBuf>, ConfigError> {
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let all_tls = url
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .all(|u| u.starts_with("rediss://"));
    if !all_tls {
        return Err(ConfigError::Invalid {
            key: "store.redis_ca_file",
            env: env_var("store.redis_ca_file"),
            problem: "is set, so store.redis_url must use rediss:// (TLS) for every node".into(),
        });
    }
    Ok(Some(file))
}

impl RawSettings {
    /// Checks every key and builds the typed settings.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let meta = MetaSettings {
            app_secret: secret("meta.app_secret", self.meta.app_secret, MIN_SECRET_CHARS)?,
            app_secret_previous: optional_secret(
                "meta.app_secret_previous",
                self.meta.app_secret_previous,
                MIN_SECRET_CHARS,
            )?,
            verify_token: secret(
                "meta.verify_token",
                self.meta.verify_token,
                MIN_SECRET_CHARS,
            )?,
            access_token: secret(
                "meta.access_token",
                self.meta.access_token,
                MIN_SECRET_CHARS,
            )?,
            graph_api_base: graph_api_base(&self.meta.graph_api_base)?,
            phone_number_id: Some(self.meta.phone_number_id).filter(|s| !s.is_empty()),
        };
        let master_key = key32("privacy.master_key", &self.privacy.master_key)?;
        let mut master_key_previous = Vec::new();
        for k in key_list(self.privacy.master_key_previous.expose_secret()) {
            if let Some(k) = key32("privacy.master_key_previous", &SecretString::from(k))? {
                master_key_previous.push(k);
            }
        }
        if master_key.is_none() && !master_key_previous.is_empty() {
            return Err(ConfigError::Missing {
                key: "privacy.master_key",
                env: env_var("privacy.master_key"),
            });
        }
        let privacy = PrivacySettings {
            master_key,
            master_key_previous,
            pseudonym_key: key32("privacy.pseudonym_key", &self.privacy.pseudonym_key)?,
            policy_version: self.privacy.policy_version,
            policy_notice: self.privacy.policy_notice,
            retention_days: self.privacy.retention_days,
            erase_confirm_minutes: self.privacy.erase_confirm_minutes,
        };
        let backend = match self.store.backend.as_str() {
            "embedded" => Backend::Embedded,
            "redis" => Backend::Redis,
            "redis-cluster" => Backend::RedisCluster,
            other => {
                return Err(ConfigError::Invalid {
                    key: "store.backend",
                    env: env_var("store.backend"),
                    problem: format!(
                        "{other:?} is not \"embedded\", \"redis\" or \"redis-cluster\""
                    ),
                });
            }
        };
        if self.store.key_prefix.contains(['{', '}']) {
            return Err(ConfigError::Invalid {
                key: "store.key_prefix",
                env: env_var("store.key_prefix"),
                problem: "must not contain { or } (they would break Redis Cluster hash tags)"
                    .into(),
            });
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "server.max_body_bytes",
                env: env_var("server.max_body_bytes"),
                problem: "must be at least 1024 (Meta sends up to about 3 MB)".into(),
            });
        }
        for (key, value) in [
            (
                "outbox.messages_per_second",
                self.outbox.messages_per_second,
            ),
            ("outbox.max_attempts", self.outbox.max_attempts),
            ("outbox.pair_burst", self.outbox.pair_burst),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    env: env_var(key),
                    problem: "must be at least 1".into(),
                });
            }
        }
        if self.outbox.request_timeout < Duration::from_secs(1)
            || self.outbox.request_timeout > crate::outbox::graph::TIMEOUT
        {
            return Err(ConfigError::Invalid {
                key: "outbox.request_timeout",
                env: env_var("outbox.request_timeout"),
                problem: "must be 1s to 30s".into(),
            });
        }
        if self.outbox.retry_base.is_zero() || self.outbox.retry_cap < self.outbox.retry_base {
            return Err(ConfigError::Invalid {
                key: "outbox.retry_cap",
                env: env_var("outbox.retry_cap"),
                problem:
                    "outbox.retry_base must be above zero and outbox.retry_cap at least as long"
                        .into(),
            });
        }
        let mut integrations = Vec::new();
        for (index, raw) in self.integrations.webhooks.into_iter().enumerate() {
            let hook = raw.validate(index)?;
            if integrations
                .iter()
                .any(|h: &std::sync::Arc<crate::integrations::Subscriber>| h.name == hook.name)
            {
                return Err(ConfigError::Webhook {
                    index,
                    name: hook.name.clone(),
                    problem: "another receiver has this name".into(),
                });
            }
            integrations.push(hook);
        }
        Ok(Settings {
            server: self.server,
            meta,
            store: StoreSettings {
                backend,
                path: self.store.path,
                redis_ca_file: redis_ca_file(&self.store.redis_url, self.store.redis_ca_file)?,
                redis_url: self.store.redis_url,
                key_prefix: self.store.key_prefix,
            },
            flows: self.flows,
            outbox: self.outbox,
            privacy,
            business: self.business,
            admin: AdminSettings {
                token: optional_secret("admin.token", self.admin.token, MIN_ADMIN_TOKEN_CHARS)?,
            },
            log: self.log,
            console: self.console,
            integrations,
            config_file: None,
        })
    }
}

/// Splits a list of keys written as base64, separated by commas or spaces.
pub fn key_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn console_secure_cookie_is_read_from_the_environment() {
        let s = Settings::load_from(None, env(&[("WHATSIFY__CONSOLE__SECURE_COOKIE", "true")]))
            .expect("valid");
        assert!(s.console.secure_cookie_for("127.0.0.1:8080"));
    }

    fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut base = vec![
            ("WHATSIFY__META__APP_SECRET", "app-secret-0123456789"),
            ("WHATSIFY__META__VERIFY_TOKEN", "verify-token-0123456789"),
            ("WHATSIFY__META__ACCESS_TOKEN", "access-token-0123456789"),
            ("WHATSIFY__PRIVACY__MASTER_KEY", KEY),
        ];
        base.extend_from_slice(extra);
        base.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn load(vars: Vec<(String, String)>) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("empty.toml");
        std::fs::write(&file, "").expect("write");
        Settings::load_from(Some(&file), vars)
    }

    #[test]
    fn defaults_with_secrets_from_the_environment_load() {
        let s = load(env(&[])).expect("settings");
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(s.server.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(s.store.backend, Backend::Embedded);
        assert_eq!(s.flows.session_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(s.outbox.max_age, Duration::from_secs(4 * 3600));
        assert!(s.admin.token.is_none());
        assert!(s.meta.app_secret_previous.is_none());
        assert_eq!(
            s.privacy.master_key.as_ref().map(|k| k.expose()[1]),
            Some(1)
        );
    }

    #[test]
    fn a_missing_secret_names_the_key_and_its_variable() {
        let vars: Vec<_> = env(&[])
            .into_iter()
            .filter(|(k, _)| k != "WHATSIFY__META__APP_SECRET")
            .collect();
        let err = load(vars).expect_err("must fail").to_string();
        assert!(err.contains("meta.app_secret"), "{err}");
        assert!(err.contains("WHATSIFY__META__APP_SECRET"), "{err}");
    }

    #[test]
    fn a_short_secret_is_refused_without_printing_it() {
        let err = load(env(&[("WHATSIFY__META__VERIFY_TOKEN", "tiny-token")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("WHATSIFY__META__VERIFY_TOKEN"), "{err}");
        assert!(!err.contains("tiny-token"), "{err}");
    }

    #[test]
    fn previous_master_keys_are_a_list_and_need_a_current_one() {
        let list = format!("{KEY}, {KEY}");
        let s = load(env(&[(
            "WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS",
            list.as_str(),
        )]))
        .expect("settings");
        assert_eq!(s.privacy.master_key_previous.len(), 2);
        let bad = load(env(&[("WHATSIFY__PRIVACY__MASTER_KEY_PREVIOUS", "nope")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("privacy.master_key_previous"), "{bad}");
    }

    #[test]
    fn a_master_key_of_the_wrong_length_is_refused() {
        let err = load(env(&[("WHATSIFY__PRIVACY__MASTER_KEY", "AAECAwQ=")]))
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("privacy.master_key") && err.contains("32"),
            "{err}"
        );
    }

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "[server]\nbind = \"0.0.0.0:9000\"\n[outbox]\nmax_attempts = 3\n[store]\nbackend = \"redis\"\n",
        )
        .expect("write");
        let s = Settings::load_from(Some(&file), env(&[("WHATSIFY__OUTBOX__MAX_ATTEMPTS", "5")]))
            .expect("settings");
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.outbox.max_attempts, 5);
        assert_eq!(s.store.backend, Backend::Redis);
    }

    fn with_webhooks(toml: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("w.toml");
        std::fs::write(&file, toml).expect("write");
        Settings::load_from(Some(&file), env(&[]))
    }

    const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    #[test]
    fn webhook_receivers_are_read_and_checked() {
        let s = with_webhooks(&format!(
            "[[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://crm.example/in\"\n\
             secret = \"whsec_{KEY_B64}\"\nevents = [\"contact.created\", \"contact.erased\"]\n\
             fields = [\"name\", \"consent\"]\n\
             [[integrations.webhooks]]\nname = \"desk\"\nurl = \"http://127.0.0.1:9000/h\"\n\
             secret = \"whsec_{KEY_B64}\"\nevents = [\"message.received\"]\n"
        ))
        .expect("settings");
        assert_eq!(s.integrations.len(), 2);
        let crm = &s.integrations[0];
        assert_eq!(crm.name, "crm");
        assert_eq!(
            crm.fields,
            [
                crate::integrations::Field::Name,
                crate::integrations::Field::Consent
            ]
        );
        assert!(s.integrations[1].fields.is_empty());
        assert!(
            !format!("{s:?}").contains(KEY_B64),
            "the secret never prints"
        );

        let refused = |hook: &str, why: &str| {
            let err = with_webhooks(&format!(
                "[[integrations.webhooks]]\nname = \"crm\"\n{hook}"
            ))
            .expect_err("refused")
            .to_string();
            assert!(err.contains(why), "{why:?} not in {err}");
            assert!(!err.contains(KEY_B64), "{err}");
        };
        let ok_secret = format!("secret = \"whsec_{KEY_B64}\"\n");
        refused(
            &format!(
                "url = \"http://crm.example/in\"\n{ok_secret}events = [\"contact.created\"]\n"
            ),
            "must be https://",
        );
        refused(
            "url = \"https://crm.example/in\"\nsecret = \"s3cret-s3cret-s3cret\"\nevents = [\"contact.created\"]\n",
            "whsec_",
        );
        refused(
            &format!(
                "url = \"https://crm.example/in\"\n{ok_secret}events = [\"contact.deleted\"]\n"
            ),
            "unknown event \"contact.deleted\"",
        );
        refused(
            &format!(
                "url = \"https://crm.example/in\"\n{ok_secret}events = [\"contact.created\"]\nfields = [\"phone\"]\n"
            ),
            "unknown field \"phone\"",
        );
        refused(
            &format!("url = \"https://crm.example/in\"\n{ok_secret}events = []\n"),
            "events is empty",
        );
        let twice = format!(
            "[[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://a.example/\"\n{ok_secret}events = [\"contact.created\"]\n\
             [[integrations.webhooks]]\nname = \"crm\"\nurl = \"https://b.example/\"\n{ok_secret}events = [\"contact.created\"]\n"
        );
        let err = with_webhooks(&twice).expect_err("twice").to_string();
        assert!(
            err.contains("integrations.webhooks[1]") && err.contains("name"),
            "{err}"
        );
    }

    #[test]
    fn the_store_backend_is_one_of_three() {
        let backend = |b: &str| {
            Settings::load_from(None, env(&[("WHATSIFY__STORE__BACKEND", b)]))
                .map(|s| s.store.backend)
        };
        assert_eq!(
            backend("redis-cluster").expect("valid"),
            Backend::RedisCluster
        );
        let err = backend("cluster").expect_err("invalid").to_string();
        assert!(
            err.contains("store.backend") && err.contains("redis-cluster"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_not_silently_ignored() {
        let err = load(env(&[("WHATSIFY__META__APP_SECRTE", "x")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("app_secrte"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = load(env(&[])).expect("settings");
        let shown = format!("{s:?}");
        assert!(!shown.contains("app-secret-0123456789"));
        assert!(!shown.contains(KEY));
    }
}

/// A setting SIGHUP may replace while the process runs: readers take a
/// copy of the value in force.
#[derive(Debug, Clone)]
pub struct Live<T>(std::sync::Arc<std::sync::RwLock<T>>);

impl<T: Clone> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(std::sync::Arc::new(std::sync::RwLock::new(value)))
    }

    /// The value in force.
    pub fn get(&self) -> T {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `value` in force.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}
