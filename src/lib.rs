//! whatsify: a WhatsApp Cloud API bot server.
//!
//! Every module, in the order a customer's message flows through them
//! (the layers and their rules: `docs/architecture.md`).
//!
//! Records, settings and support, used by every stage:
//! - [`domain`]: ids, Meta's webhook payload as typed records, and the
//!   records the stages share (profile, conversation, inbox event,
//!   outbound job and message, campaign, audit and consent records).
//! - [`clock`]: the time the pipeline reads (tests move it).
//! - [`config`]: typed settings (defaults < TOML file < environment).
//! - [`telemetry`]: the tracing subscriber (JSON or text logs).
//! - [`shutdown`]: the stop signal and the wake-ups between stages.
//! - [`crypto`]: sealing stored values, the key ring, pseudonymous contact
//!   ids, the webhook signature.
//! - [`store`]: the storage roles and their backends (Redis, embedded).
//! - [`metrics`]: the Prometheus counters and gauges.
//! - [`privacy`]: keywords, consent, the audit chain, exports, the master
//!   keys' sources, retention.
//!
//! The pipeline:
//! - [`webhook`]: `POST /webhook`, verified, split into events, consent
//!   decided, sealed into the durable inbox.
//! - [`inbox`]: the workers: a contact's events, privacy commands, the flow
//!   engine, the replies committed to the outbox.
//! - [`flow`]: flow files, their validator and the engine.
//! - [`outbox`]: the senders: ordered, rate-limited, retried Graph API calls.
//! - [`integrations`]: what CRM and helpdesk receivers get, signed.
//! - [`campaign`]: promotional campaigns and their dispatcher.
//! - [`operators`]: operators' accounts, sign-in and API tokens.
//!
//! Around it:
//! - [`state`]: `AppState`, what every handler shares.
//! - [`http`]: errors mapped to HTTP, the authorised caller and contact
//!   extractors, bodies, the credential throttle.
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` and the ops listener.
//! - [`admin`]: the admin API.
//! - [`console`]: the operator console.
//! - [`reload`]: settings and flows reloaded on SIGHUP.
//! - [`startup`]: builds the application the binary and the tests run.
//! - [`chat`]: `whatsify chat`, the flows tried from a terminal.

pub mod admin;
pub mod campaign;
pub mod chat;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod flow;
pub mod health;
pub mod http;
pub mod inbox;
pub mod integrations;
pub mod metrics;
pub mod offboard;
pub mod operators;
pub mod outbox;
pub mod privacy;
pub mod reload;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhook;
