//! The application state every request handler and background task
//! shares: the store, the keys, the settings in force and the in-memory
//! caches of this instance. It imports no handler.

pub mod links;
pub mod throttle;

use std::sync::Arc;

use secrecy::SecretString;

use crate::config::Settings;
use crate::crypto::keyring::Keyring;
use crate::crypto::pseudonym::Pseudonymizer;
use crate::crypto::signature::SignatureVerifier;
use crate::privacy::keys::Crypto;
use crate::store::Store;

/// What every request handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The app secrets webhooks are signed with (SIGHUP reloads them).
    pub verifier: crate::config::Live<SignatureVerifier>,
    pub verify_token: crate::config::Live<SecretString>,
    /// The master keys and the contacts' data keys.
    pub keyring: Keyring,
    pub pseudonymizer: Pseudonymizer,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    /// The flows in force (set by [`crate::startup::Application::build`]).
    pub flows: Option<crate::flow::SharedFlows>,
    /// Set on SIGTERM: the webhook answers 503 from then on.
    pub shutdown: crate::shutdown::Shutdown,
    /// The admin API's bearer token; `None`: the admin API is off.
    pub admin_token: crate::config::Live<Option<SecretString>>,
    /// Wakes this instance's workers when a delivery was stored.
    pub wake: crate::shutdown::Wakeups,
    /// `privacy.policy_version`, stamped on consent recorded at ingress.
    pub policy_version: String,
    /// The audit log's hash chain.
    pub audit: crate::privacy::audit::Chain,
    /// `privacy.retention_days`, stated in exports.
    pub retention_days: u32,
    /// The workers' clock (tests and `whatsify chat` move it).
    pub clock: crate::clock::Clock,
    /// What a campaign request is checked against.
    pub campaign_limits: crate::config::Live<crate::campaign::Limits>,
    /// The CRM and helpdesk receivers (`[[integrations.webhooks]]`).
    pub hooks: crate::integrations::Hooks,
    /// When this instance last took a webhook delivery (Unix s; 0: none).
    pub last_webhook: Arc<std::sync::atomic::AtomicU64>,
    /// `flows.dir`, which the console's flows page checks.
    pub flows_dir: std::path::PathBuf,
    /// `flows.session_ttl`, for the console's simulator.
    pub session_ttl: std::time::Duration,
    /// `privacy.erase_confirm_minutes` in seconds: an erasure request not
    /// confirmed within it has lapsed.
    pub erase_window: u64,
    /// Failed sign-ins and bearer tokens, which slow further attempts.
    pub throttle: throttle::Throttle,
    /// `console.secure_cookie` as resolved: the session cookie is always
    /// `Secure`, and every answer carries `Strict-Transport-Security`.
    pub secure_cookie: bool,
    /// `console.public_url`: where enrolment links point.
    pub public_url: Option<String>,
    /// The contact keys the webhook resolved lately (contact links).
    pub contact_links: Arc<links::Cache>,
    /// Each business's flows, by number (`flows` is `flows.dir`'s).
    pub flow_sets: Option<crate::flow::FlowSets>,
    /// The client businesses served, by id and by phone number id.
    pub businesses: Arc<crate::config::businesses::Directory>,
    /// The businesses removed or being removed: their webhooks are
    /// discarded.
    pub removed: crate::offboard::Removed,
}

impl AppState {
    pub fn new(settings: &Settings, store: Arc<dyn Store>, crypto: &Crypto) -> Self {
        AppState {
            store,
            verifier: crate::config::Live::new(SignatureVerifier::new(
                settings.meta.app_secret.clone(),
                settings.meta.app_secret_previous.clone(),
            )),
            verify_token: crate::config::Live::new(settings.meta.verify_token.clone()),
            keyring: crypto.keyring.clone(),
            pseudonymizer: crypto.pseudonymizer.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: settings.server.body_timeout,
            flows: None,
            shutdown: crate::shutdown::Shutdown::new(),
            admin_token: crate::config::Live::new(settings.admin.token.clone()),
            wake: crate::shutdown::Wakeups::default(),
            policy_version: settings.privacy.policy_version.clone(),
            audit: crypto.audit.clone(),
            retention_days: settings.privacy.retention_days,
            clock: crate::clock::Clock::system(),
            campaign_limits: crate::config::Live::new(crate::campaign::Limits::of(settings)),
            hooks: crate::integrations::Hooks::new(settings.integrations.clone()),
            last_webhook: Default::default(),
            flows_dir: settings.flows.dir.clone(),
            session_ttl: settings.flows.session_ttl,
            erase_window: u64::from(settings.privacy.erase_confirm_minutes.max(1)) * 60,
            throttle: Default::default(),
            secure_cookie: settings.console.secure_cookie_for(&settings.server.bind),
            public_url: settings.console.public_url.clone(),
            contact_links: Default::default(),
            flow_sets: None,
            businesses: Arc::new(crate::config::businesses::Directory::new(
                settings.businesses.clone(),
            )),
            removed: Default::default(),
        }
    }
}
