//! Privacy primitives used from ingress on: encryption of stored content
//! ([`crypto`]) and pseudonymous ids for logs and storage keys
//! ([`pseudonym`]). Consent, export, erasure and audit build on these.

pub mod crypto;
pub mod pseudonym;
