//! Integration tests through the real path: the server on a free port,
//! signed HTTP requests, real Redis, and the embedded store.

mod helpers;
mod operators;
mod operators_helpers;

mod audit_paging;
mod bodies;
mod business_routes;
mod businesses;
mod campaign_erasure;
mod campaigns;
mod consent_bounds;
mod console;
mod console_businesses;
mod console_inbox;
mod console_operators;
mod contact_links;
mod conversation;
mod crash;
mod crash_recovery;
mod credentials;
mod exposure;
mod graph;
mod handoff;
mod handshake;
mod inbox;
mod ingest;
mod instances;
mod integrations;
mod keys;
mod logs;
mod metrics;
mod notice;
mod offboarding;
mod outbox;
mod privacy;
mod process;
mod property;
mod redis_faults;
mod reload;
mod roles;
mod signature;
mod store;
mod store_files;
mod transport;
mod upgrade;
