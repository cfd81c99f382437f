//! Operators: the people (and their scripts) who work in the admin API
//! and the console, their roles and what each role may do. The rules are
//! pure; `http::access` names the permission each route needs and
//! `operators` keeps the accounts.

use serde::{Deserialize, Serialize};

use crate::domain::BusinessId;

/// What an operator's job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, every business; manages operators.
    Owner,
    /// For their businesses: contacts, exports, erasures, consent records,
    /// campaigns, flows, the privacy desk, legal holds.
    Admin,
    /// For their businesses: the inbox of handed-off conversations, a
    /// contact's profile and recent conversation, replies.
    Agent,
    /// The audit log and the desk's list, read-only, no message content.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Agent, Role::Auditor];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role may do `perm` (for a business it serves).
    pub fn may(self, perm: Perm) -> bool {
        use Perm::*;
        match self {
            Role::Owner => true,
            Role::Admin => matches!(
                perm,
                Signed
                    | ContactView
                    | ContactExport
                    | ContactErase
                    | Consent
                    | Deliveries
                    | Campaigns
                    | Audit
                    | Stats
                    | DeadLetters
                    | Flows
                    | Desk
                    | DeskView
                    | Hold
            ),
            Role::Agent => matches!(perm, Signed | ContactView | Deliveries | Inbox | Reply),
            Role::Auditor => matches!(perm, Signed | Audit | Stats | DeskView),
        }
    }
}

/// What a route does, as far as who may call it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Anything every signed-in operator may do: the overview, their own
    /// API tokens, the list of their businesses.
    Signed,
    /// A contact's profile and recent conversation.
    ContactView,
    /// A contact's export (MY DATA's copy).
    ContactExport,
    /// Erasing a contact.
    ContactErase,
    /// Recording consent given another way.
    Consent,
    /// A contact's delivery records (no content).
    Deliveries,
    /// The agents' inbox: the list and its live updates.
    Inbox,
    /// Taking, answering and closing a handed-off conversation.
    Reply,
    /// Campaigns: create, list, read, cancel.
    Campaigns,
    /// The audit log.
    Audit,
    /// The anonymous statistics.
    Stats,
    /// The dead letters.
    DeadLetters,
    /// The flows in force, their diagrams and the simulator.
    Flows,
    /// Logging and carrying out the privacy desk's requests.
    Desk,
    /// The desk's list of requests (no content).
    DeskView,
    /// Legal holds and disclosures.
    Hold,
    /// Removing a business.
    RemoveBusiness,
    /// Managing operators.
    Operators,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The break-glass admin token.
    Root,
    /// A signed-in operator (their id).
    Operator(String),
    /// One of an operator's API tokens (its id, the operator's id).
    Token(String, String),
}

/// An authenticated caller: who, their role, and the businesses they
/// serve (`None`: every one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub who: Who,
    pub role: Role,
    pub businesses: Option<Vec<BusinessId>>,
}

impl Caller {
    /// The break-glass admin token's caller.
    pub fn root() -> Caller {
        Caller {
            who: Who::Root,
            role: Role::Owner,
            businesses: None,
        }
    }

    /// How the audit log names the caller: `root`, `operator:<id>` or
    /// `token:<id>` (never an email).
    pub fn audit_name(&self) -> String {
        match &self.who {
            Who::Root => "root".into(),
            Who::Operator(id) => format!("operator:{id}"),
            Who::Token(id, _) => format!("token:{id}"),
        }
    }

    /// The operator's id (`None` for root).
    pub fn operator_id(&self) -> Option<&str> {
        match &self.who {
            Who::Root => None,
            Who::Operator(id) | Who::Token(_, id) => Some(id),
        }
    }

    /// Whether the caller serves `business`.
    pub fn serves(&self, business: &BusinessId) -> bool {
        self.businesses
            .as_ref()
            .is_none_or(|list| list.contains(business))
    }

    /// Whether the caller may do `perm` for `business` (`None`: a route
    /// about no one business).
    pub fn may(&self, perm: Perm, business: Option<&BusinessId>) -> bool {
        self.role.may(perm) && business.is_none_or(|b| self.serves(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_cannot_export_or_erase_and_an_auditor_cannot_see_contacts() {
        assert!(!Role::Agent.may(Perm::ContactExport));
        assert!(!Role::Agent.may(Perm::ContactErase));
        assert!(!Role::Agent.may(Perm::Campaigns));
        assert!(Role::Agent.may(Perm::Reply));
        assert!(!Role::Auditor.may(Perm::ContactView));
        assert!(Role::Auditor.may(Perm::Audit));
        assert!(!Role::Admin.may(Perm::Operators));
        assert!(Role::Owner.may(Perm::Operators));
    }

    #[test]
    fn a_caller_serves_only_its_businesses() {
        let cafe = BusinessId::parse("cafe").expect("id");
        let bank = BusinessId::parse("bank").expect("id");
        let c = Caller {
            who: Who::Operator("op1".into()),
            role: Role::Admin,
            businesses: Some(vec![cafe.clone()]),
        };
        assert!(c.may(Perm::Campaigns, Some(&cafe)));
        assert!(!c.may(Perm::Campaigns, Some(&bank)));
        assert_eq!(c.audit_name(), "operator:op1");
        assert!(Caller::root().may(Perm::Operators, Some(&bank)));
    }
}
