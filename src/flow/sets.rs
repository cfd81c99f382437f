//! The flows of each business: one set per flows folder, found by the
//! business number a customer wrote to.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Flows, SharedFlows};

/// Every business's flows in force.
#[derive(Clone)]
pub struct FlowSets {
    /// `flows.dir`'s: numbers no business lists (the `default` business).
    default: SharedFlows,
    /// Each listed number's business's set (shared by businesses that
    /// name the same folder).
    by_number: Arc<HashMap<String, SharedFlows>>,
}

impl FlowSets {
    /// One set for every number.
    pub fn one(flows: SharedFlows) -> FlowSets {
        FlowSets {
            default: flows,
            by_number: Default::default(),
        }
    }

    pub fn new(default: SharedFlows, by_number: HashMap<String, SharedFlows>) -> FlowSets {
        FlowSets {
            default,
            by_number: Arc::new(by_number),
        }
    }

    /// The flows in force for a customer who wrote to `phone_number_id`.
    pub fn for_number(&self, phone_number_id: &str) -> Arc<Flows> {
        self.shared_for(phone_number_id).current()
    }

    /// The set that answers `phone_number_id`.
    pub fn shared_for(&self, phone_number_id: &str) -> &SharedFlows {
        self.by_number.get(phone_number_id).unwrap_or(&self.default)
    }

    /// `flows.dir`'s set.
    pub fn default_set(&self) -> &SharedFlows {
        &self.default
    }
}
