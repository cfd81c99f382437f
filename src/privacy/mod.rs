//! Privacy: encryption of stored content ([`crypto`]), pseudonymous ids
//! for logs and storage keys ([`pseudonym`]), the commands a customer can
//! send at any moment ([`keywords`]), the consent ledger's state
//! ([`consent`]), and the audit log ([`audit`]).

pub mod audit;
pub mod audit_view;
pub mod consent;
pub mod crypto;
pub mod erasure;
pub mod export;
pub mod keys;
pub mod keywords;
pub mod pseudonym;
pub mod requests;
pub mod retention;
