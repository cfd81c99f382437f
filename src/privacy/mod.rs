//! Privacy features over the store (the cryptography they use is
//! [`crate::crypto`]): the master keys' sources ([`keys`]), the commands a customer can
//! send at any moment ([`keywords`]), the consent ledger's state
//! ([`consent`]), the audit log ([`audit`]), and legal holds and
//! disclosures to authorities ([`hold`]).

pub mod audit;
pub mod audit_view;
pub mod consent;
pub mod desk;
pub mod erasure;
pub mod export;
pub mod hold;
pub mod keys;
pub mod keywords;
pub mod requests;
pub mod retention;
