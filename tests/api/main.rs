//! Integration tests through the real path: the server on a free port,
//! signed HTTP requests, real Redis, and the embedded store.

mod helpers;

mod campaign_erasure;
mod campaigns;
mod console;
mod conversation;
mod crash;
mod graph;
mod handoff;
mod handshake;
mod ingest;
mod instances;
mod integrations;
mod keys;
mod logs;
mod metrics;
mod outbox;
mod privacy;
mod property;
mod redis_faults;
mod reload;
mod signature;
mod store;
mod store_files;
mod transport;
