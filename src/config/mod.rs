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

use secrecy::{ExposeSecret, SecretBox, SecretString};

pub mod businesses;
pub mod console;
mod defaults;
pub mod integrations;
mod raw;
pub mod transport;
mod validate;

pub use businesses::Business;
pub use console::ConsoleSettings;
pub use defaults::DEFAULTS_TOML;
pub use raw::*;

/// The longest `outbox.request_timeout`: a Graph API call still
/// unanswered after it fails as unanswered.
pub const GRAPH_TIMEOUT_MAX: Duration = Duration::from_secs(30);

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
    #[error("businesses[{index}] (id {id:?}): {key} {problem}")]
    Business {
        index: usize,
        id: String,
        key: &'static str,
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
    /// The client businesses served: the `[[businesses]]` entries, or the
    /// one `default` business the other sections describe. Never empty.
    pub businesses: Vec<Business>,
    /// The CRM and helpdesk receivers (`[[integrations.webhooks]]`).
    pub integrations: Vec<std::sync::Arc<crate::config::integrations::Subscriber>>,
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
    /// Sent before the first reply to each new contact; empty: the
    /// built-in wording, which names the business and links `policy_url`.
    pub privacy_notice: String,
    /// The privacy policy's address (empty: none), in the built-in
    /// first-contact notice.
    pub policy_url: String,
    pub retention_days: u32,
    pub erase_confirm_minutes: u32,
    /// The privacy desk's legal deadline, in days after a request was
    /// received (a business may set its own).
    pub request_deadline_days: u32,
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
        let mut business_env = std::collections::BTreeMap::new();
        let mut sections = config::Map::new();
        for (k, v) in env {
            if k.starts_with("WHATSIFY__") {
                sections.insert(k, v);
            } else if k.starts_with("WHATSIFY_BUSINESS__") {
                business_env.insert(k, v);
            }
        }
        let env = sections;
        builder = builder.add_source(
            config::Environment::with_prefix("WHATSIFY")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        raw.validate(&business_env)
    }
}

/// Splits a list of keys written as base64, separated by commas or spaces.
pub fn key_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
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

#[cfg(test)]
mod tests;
