//! Consent records and the rules that decide whether a consent entry is
//! recorded, shared by the store (which applies them in the same write
//! as the append) and the privacy features.
//!
//! The ledger is append-only evidence; the state of a purpose is its
//! latest entry by the time of the customer's action (`at`: the message
//! time Meta reports, in seconds). Within one second the order of two
//! actions is not known for sure (a STOP is written when it arrives, a
//! flow's opt-in when the flow runs), so a withdrawal in that second wins:
//! in doubt, no marketing. Marketing consent is absent (no) until given
//! explicitly.

/// One entry of a contact's consent ledger (append-only: the current
/// state of a purpose is its latest entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsentChange {
    /// What the consent is for (`marketing`, …).
    pub purpose: String,
    pub granted: bool,
    /// When (Unix seconds).
    pub at: u64,
    /// How we learned it: `keyword` (STOP, START… typed), `button` (the
    /// "Stop promotions" quick reply), `flow` (a flow's opt-in or opt-out
    /// step), `whatsapp:user_preferences` (WhatsApp's Stop/Resume),
    /// `meta:131050` (Meta said the customer stopped marketing messages),
    /// `admin`.
    pub source: String,
    /// The privacy policy in force (`privacy.policy_version`).
    pub policy_version: String,
    /// What shows it: a keyed hash of the customer's message id (or of
    /// the webhook event) that carried the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The business the consent was given to or withdrawn from (its
    /// statistics count it); `None` for the `default` business, whose
    /// entries read as earlier releases wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<crate::domain::BusinessId>,
}

/// The purpose of promotional messages.
pub const MARKETING: &str = "marketing";

/// Not a consent but a notice: the privacy policy version a contact was
/// shown (`granted` is always true).
pub const POLICY_NOTICE: &str = "policy_notice";

/// Whether `purpose` is granted, with the entry that says so; `None`: no
/// entry (never asked), which counts as not granted.
pub fn state<'a>(ledger: &'a [ConsentChange], purpose: &str) -> Option<&'a ConsentChange> {
    ledger
        .iter()
        .filter(|c| c.purpose == purpose)
        // The latest second; in it, a withdrawal over a grant; among
        // equals, the last written (max_by_key keeps the last).
        .max_by_key(|c| (c.at, !c.granted))
}

/// Why a purpose is not granted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No entry: never given.
    NoConsent,
    /// Withdrawn.
    OptedOut,
}

impl Refusal {
    /// As delivery records and campaign reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoConsent => "no_consent",
            Refusal::OptedOut => "opted_out",
        }
    }
}

/// Whether recording `change` after `ledger` changes anything: a purpose
/// whose latest entry already says the same (a second STOP, a repeated
/// opt-in) does not, nor the same choice again in the same second (a
/// START in the second of a STOP loses to it, and so would its repeats);
/// neither is recorded again. Policy notices always count (each is shown
/// once per policy version).
pub fn changes(ledger: &[ConsentChange], change: &ConsentChange) -> bool {
    if change.purpose == POLICY_NOTICE {
        return true;
    }
    let again = ledger
        .iter()
        .any(|c| c.purpose == change.purpose && c.granted == change.granted && c.at == change.at);
    !again && state(ledger, &change.purpose).is_none_or(|c| c.granted != change.granted)
}

/// How many times a contact may give a consent again (START, an opt-in
/// button, WhatsApp's Resume) within 24 hours of the action. A withdrawal
/// is always recorded; a grant beyond this is not (nor counted, audited or
/// shared), and the customer is told they stay unsubscribed until
/// tomorrow. Since a withdrawal is recorded only when it changes the
/// state, a customer alternating STOP and START adds at most
/// `2 × GRANTS_PER_DAY + 1` entries a day to the ledger and the audit log.
pub const GRANTS_PER_DAY: usize = 3;

/// The rolling window of [`GRANTS_PER_DAY`], in seconds.
pub const GRANT_WINDOW_SECS: u64 = 86_400;

/// What recording a consent entry after a ledger amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It changes the state: recorded.
    Record,
    /// It changes nothing (see [`changes`]): not recorded.
    Same,
    /// A grant beyond [`GRANTS_PER_DAY`]: not recorded; the purpose stays
    /// as it was (withdrawn or never given).
    Refused,
}

/// Whether `change` is recorded after `ledger`: a withdrawal whenever it
/// changes something; a grant only when fewer than [`GRANTS_PER_DAY`]
/// grants of its purpose are on record within [`GRANT_WINDOW_SECS`] of
/// its time (either side: Meta may deliver late).
pub fn decide(ledger: &[ConsentChange], change: &ConsentChange) -> Decision {
    if !changes(ledger, change) {
        return Decision::Same;
    }
    if change.granted
        && change.purpose != POLICY_NOTICE
        && recent_grants(ledger, &change.purpose, change.at) >= GRANTS_PER_DAY
    {
        return Decision::Refused;
    }
    Decision::Record
}

/// The grants of `purpose` on record within [`GRANT_WINDOW_SECS`] of `at`.
pub fn recent_grants(ledger: &[ConsentChange], purpose: &str, at: u64) -> usize {
    ledger
        .iter()
        .filter(|c| c.purpose == purpose && c.granted && c.at.abs_diff(at) < GRANT_WINDOW_SECS)
        .count()
}
