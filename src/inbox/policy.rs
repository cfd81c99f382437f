//! What each business says about privacy: the policy version stamped on
//! the consent it records, its notices (first contact, policy change) and
//! the built-in answers (HELP names the business), found by the number
//! the customer wrote to.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{BusinessSettings, Settings};
use crate::domain::BusinessId;
use crate::privacy::keywords::{Notices, Texts};

/// One business's policy.
#[derive(Debug)]
pub struct Policy {
    /// The business's id: its statistics, metrics and audit entries.
    pub business: BusinessId,
    /// Its `policy_version` (else `privacy.policy_version`).
    pub version: String,
    /// The answers to STOP, START, HELP, …, its first-contact notice and
    /// the notice of a policy change.
    pub texts: Texts,
}

/// Every business's policy.
#[derive(Debug, Clone)]
pub struct Policies {
    /// `[privacy]` and `[business]`'s: numbers no business lists.
    default: Arc<Policy>,
    by_number: Arc<HashMap<String, Arc<Policy>>>,
}

impl Policies {
    /// The policies the settings give.
    pub fn of(settings: &Settings) -> Policies {
        let default = Arc::new(Policy {
            business: BusinessId::default_business(),
            version: settings.privacy.policy_version.clone(),
            texts: Texts::new(
                &settings.business,
                Notices {
                    privacy_notice: &settings.privacy.privacy_notice,
                    policy_notice: &settings.privacy.policy_notice,
                    policy_url: &settings.privacy.policy_url,
                },
            ),
        });
        let mut by_number = HashMap::new();
        for b in &settings.businesses {
            let named = BusinessSettings {
                name: b.name.clone(),
                contact: b.contact.clone(),
            };
            let policy = Arc::new(Policy {
                business: b.id.clone(),
                version: b.policy_version.clone(),
                texts: Texts::new(
                    &named,
                    Notices {
                        privacy_notice: &b.privacy_notice,
                        policy_notice: &b.policy_notice,
                        policy_url: &b.policy_url,
                    },
                ),
            });
            for number in &b.phone_number_ids {
                by_number.insert(number.clone(), policy.clone());
            }
        }
        Policies {
            default,
            by_number: Arc::new(by_number),
        }
    }

    /// The policy of the business that owns `phone_number_id`.
    pub fn for_number(&self, phone_number_id: &str) -> &Policy {
        self.by_number.get(phone_number_id).unwrap_or(&self.default)
    }
}
