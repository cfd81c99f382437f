//! whatsify: a WhatsApp Cloud API bot server.
//!
//! The modules, in the order a customer's message flows through them:
//!
//! - [`config`]: typed settings (defaults < TOML file < environment) and the
//!   secret type that never prints.
//! - [`startup`] and [`telemetry`]: build the HTTP application and the
//!   tracing subscriber the binary and the tests share.
//! - [`body`]: request bodies read only after authorisation, limited in
//!   size and time.
//! - [`webhook`]: ingress. Body size limit, `X-Hub-Signature-256`
//!   verification over the raw bytes, the typed model of Meta's payload
//!   ([`webhook::payload`]), and the split of a delivery into inbox events.
//! - [`privacy`]: encryption of stored content and pseudonymous contact ids.
//! - [`store`]: the storage trait and its two backends, Redis and the
//!   embedded redb file; the durable, de-duplicated inbox lives there.
//! - [`health`]: liveness and readiness.
//!
//! Later stages (flow engine, outbox, admin API) plug in after the inbox.

pub mod admin;
pub mod body;
pub mod campaign;
pub mod chat;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod flow;
pub mod health;
pub mod inbox;
pub mod integrations;
pub mod metrics;
pub mod outbox;
pub mod privacy;
pub mod reload;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhook;
