//! Campaign records: the definition as stored and its status, shared by
//! the store (which keeps them and compares-and-sets the status) and the
//! campaign feature.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a campaign stands. Serialized (on the wire and in storage) as
/// `scheduled`, `running`, `dispatched`, `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Scheduled,
    Running,
    /// Every audience entry was dispatched (messages may still be sending).
    Dispatched,
    Cancelled,
}

impl CampaignStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Dispatched => "dispatched",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    /// The status of its stored name.
    pub fn parse(s: &str) -> Option<CampaignStatus> {
        [
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Dispatched,
            CampaignStatus::Cancelled,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// A campaign the dispatchers still work on.
    pub fn is_active(self) -> bool {
        matches!(self, CampaignStatus::Scheduled | CampaignStatus::Running)
    }
}

impl std::fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a campaign skips a contact, counted in its report as
/// `skipped:<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Marketing consent was never given.
    NoConsent,
    /// Marketing consent was withdrawn.
    OptedOut,
    /// The contact asked for their data to be erased and is suppressed.
    Suppressed,
    /// whatsify knows nothing of the contact (or no number to send to).
    Unknown,
    /// The contact's data key cannot be unwrapped or made.
    KeyUnavailable,
    /// The audience entry cannot be opened.
    Unreadable,
    /// The template needs a value the contact has none of.
    MissingParameter,
}

impl Skip {
    /// The reasons every campaign report lists, even at 0.
    pub const REPORTED: [Skip; 4] = [
        Skip::NoConsent,
        Skip::OptedOut,
        Skip::Suppressed,
        Skip::Unknown,
    ];

    /// As counted and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoConsent => "no_consent",
            Skip::OptedOut => "opted_out",
            Skip::Suppressed => "suppressed",
            Skip::Unknown => "unknown",
            Skip::KeyUnavailable => "key_unavailable",
            Skip::Unreadable => "unreadable",
            Skip::MissingParameter => "missing_parameter",
        }
    }
}

impl From<crate::domain::consent::Refusal> for Skip {
    fn from(r: crate::domain::consent::Refusal) -> Skip {
        match r {
            crate::domain::consent::Refusal::NoConsent => Skip::NoConsent,
            crate::domain::consent::Refusal::OptedOut => Skip::OptedOut,
        }
    }
}

/// How the approved template tells the customer how to stop promotions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOut {
    /// The template has a "Stop promotions" quick-reply button at this
    /// index: whatsify gives it its payload and honours the tap.
    Button(u8),
    /// The template's own text tells the customer to reply STOP.
    Text,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// Meta's `template` object: name, language, components (with
    /// `{{contact.name}}` and `{{vars.NAME}}` placeholders in parameters).
    pub template: Value,
    /// `wa_ids`, `tags` or `all_consenting`.
    pub audience: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub phone_number_id: String,
    pub rate_per_second: u32,
    /// Not before (Unix s).
    pub send_at: u64,
    pub created_at: u64,
    pub opt_out: OptOut,
    /// Audience entries stored.
    pub targeted: u64,
    /// The business whose number sends it (recorded since campaigns exist
    /// per business; see [`Campaign::business_in`] for older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<crate::domain::BusinessId>,
}

impl Campaign {
    /// The campaign's business: as recorded, else the business that owns
    /// its number (`owner`), else `default`.
    pub fn business_in(
        &self,
        owner: impl Fn(&str) -> Option<crate::domain::BusinessId>,
    ) -> crate::domain::BusinessId {
        self.business
            .clone()
            .or_else(|| owner(&self.phone_number_id))
            .unwrap_or_else(crate::domain::BusinessId::default_business)
    }
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus;

    #[test]
    fn a_status_reads_back_as_stored_and_serialized() {
        for s in ["scheduled", "running", "dispatched", "cancelled"] {
            let status = CampaignStatus::parse(s).expect(s);
            assert_eq!(status.as_str(), s);
            assert_eq!(serde_json::to_value(status).ok(), Some(s.into()));
        }
        assert_eq!(CampaignStatus::parse("paused"), None);
    }
}
