//! Cryptography below every feature: authenticated sealing of stored
//! values ([`seal`]), the master keys and the contacts' data keys
//! ([`keyring`]), and the keyed hashes that stand in for phone numbers
//! ([`pseudonym`]), and the webhook signature ([`signature`]). Nothing here does I/O.

pub mod keyring;
pub mod pseudonym;
pub mod seal;
pub mod signature;
