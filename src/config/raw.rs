//! The settings as merged from the sources, before validation, and the
//! sections that need no validation beyond their types.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::ConsoleSettings;
use super::integrations::RawIntegrations;

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
    pub businesses: Vec<super::businesses::RawBusiness>,
    #[serde(default)]
    pub integrations: RawIntegrations,
    #[serde(default)]
    pub console: ConsoleSettings,
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
    pub(super) app_secret: SecretString,
    pub(super) app_secret_previous: SecretString,
    pub(super) verify_token: SecretString,
    pub(super) access_token: SecretString,
    pub(super) graph_api_base: String,
    pub(super) phone_number_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub(super) backend: String,
    pub(super) path: PathBuf,
    pub(super) redis_url: SecretString,
    pub(super) redis_ca_file: PathBuf,
    pub(super) key_prefix: String,
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
    pub(super) master_key: SecretString,
    pub(super) master_key_previous: SecretString,
    pub(super) pseudonym_key: SecretString,
    pub(super) policy_version: String,
    pub(super) policy_notice: String,
    pub(super) privacy_notice: String,
    pub(super) policy_url: String,
    pub(super) retention_days: u32,
    pub(super) erase_confirm_minutes: u32,
    pub(super) request_deadline_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub(super) token: SecretString,
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
