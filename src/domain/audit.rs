//! The audit log's records: one privacy event and its place in the hash
//! chain (computed and checked by `privacy::audit`; kept by the store).

use serde::{Deserialize, Serialize};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Customer,
    Admin,
    System,
}

/// One privacy event, as recorded (never message content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (Unix s).
    pub at: u64,
    /// What: `consent_given`, `consent_withdrawn`, `policy_notice`,
    /// `admin_access`, `export_request`, `erasure_request`, … Requests end
    /// in `_request` and are closed by the same kind ending in
    /// `_completed` (or `_declined`) for the same contact.
    pub kind: String,
    /// The pseudonymous contact id, when the event concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub actor: Actor,
    /// A short description with no personal data ("marketing, keyword").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The business the event concerns; `None` for the `default` business
    /// and for events of the whole service. Left out of the JSON when
    /// `None`, so entries written before businesses existed hash (and so
    /// verify) as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<crate::domain::BusinessId>,
    /// Who acted, when a person or script did: `root` (the break-glass
    /// admin token), `operator:<id>` or `token:<id>`. Left out of the JSON
    /// when `None` (the customer, the system, entries older than
    /// operators), so older entries hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl AuditEvent {
    /// The business whose audit log shows this event (`default` when the
    /// event names none).
    pub fn business_id(&self) -> crate::domain::BusinessId {
        crate::domain::BusinessId::of_tag(self.business.as_ref())
    }
}

/// An event in the log, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev: String,
    pub hash: String,
}
