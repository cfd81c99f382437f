//! The privacy notices a business sends on its own: the first-contact
//! notice before its first reply to a new contact, and the notice of a
//! policy change to a contact who writes in after its `policy_version`
//! changed. Each is queued in the contact's outbox ahead of the reply it
//! precedes and recorded in their ledger (purpose `policy_notice`) with
//! the version shown.

use super::effects::Outputs;
use super::*;
use crate::domain::consent::POLICY_NOTICE;

/// The ledger source of a first-contact notice.
pub const FIRST_CONTACT: &str = "first_contact";
/// The ledger source of a policy change's notice.
pub const POLICY_CHANGE: &str = "notice";

/// Whether a job is a message the customer sees (not a read receipt, not
/// the erasure that follows a confirmation).
fn is_message(job: &Job) -> bool {
    !matches!(job.message, OutMessage::MarkRead { .. } | OutMessage::Erase)
}

/// The notice `body`, sent as `reply` is: same number, recipient and
/// window, just before it.
fn notice_like(reply: &Job, body: String) -> Job {
    Job {
        id: uuid::Uuid::new_v4().to_string(),
        phone_number_id: reply.phone_number_id.clone(),
        to: reply.to.clone(),
        message: super::effects::text(body),
        created_at: reply.created_at,
        origin: Origin::Reply,
        window_at: reply.window_at,
        purpose: None,
    }
}

impl Worker {
    /// A contact shown no notice yet (a new contact: no policy version in
    /// their profile) gets the business's first-contact notice just before
    /// the first message among `jobs[from..]`, and the version shown goes
    /// into their profile and ledger. `cause` is the customer's message
    /// answered, its time and the keyed hash of its id (none for a timeout
    /// or an operator's message). Nothing when there is no such message:
    /// the notice waits for the next reply. Contacts of earlier releases
    /// have a version on record, so they get none.
    pub(super) fn first_contact_notice(
        &self,
        profile: &mut Profile,
        (jobs, consent): Outputs<'_>,
        from: usize,
        (at, evidence): (u64, Option<String>),
    ) {
        if profile.policy_version.is_some() {
            return;
        }
        let Some(first) = jobs
            .get(from..)
            .and_then(|new| new.iter().position(is_message))
            .map(|i| from + i)
        else {
            return;
        };
        let Some(reply) = jobs.get(first).filter(|j| j.origin == Origin::Reply) else {
            // A template outside the window: a free-form notice could not
            // go with it.
            return;
        };
        let policy = self.policies.for_number(&reply.phone_number_id);
        let notice = notice_like(reply, policy.texts.privacy_notice.clone());
        jobs.insert(first, notice);
        profile.policy_version = Some(policy.version.clone());
        consent.push(ConsentChange {
            purpose: POLICY_NOTICE.to_owned(),
            granted: true,
            at,
            source: FIRST_CONTACT.to_owned(),
            policy_version: policy.version.clone(),
            evidence,
            business: policy.business.tag(),
        });
    }

    /// A contact who writes in after the business's policy version changed
    /// gets its notice of the change once, before anything else, and the
    /// version shown goes into their ledger. A new contact gets the
    /// first-contact notice instead, with the first reply.
    pub(super) fn policy_change_notice(
        &self,
        profile: &mut Profile,
        (jobs, consent): Outputs<'_>,
        to: &Recipient,
        m: &InboundMessage,
        (sent_at, evidence): (u64, &str),
        now: u64,
    ) {
        let policy = self.policies.for_number(&m.origin.phone_number_id);
        let current = &policy.version;
        let Some(seen) = &profile.policy_version else {
            return;
        };
        if seen == current {
            return;
        }
        profile.policy_version = Some(current.clone());
        jobs.push(Job {
            id: uuid::Uuid::new_v4().to_string(),
            phone_number_id: m.origin.phone_number_id.clone(),
            to: to.clone(),
            message: super::effects::text(policy.texts.policy_notice.clone()),
            created_at: now,
            origin: Origin::Reply,
            window_at: Some(sent_at),
            purpose: None,
        });
        consent.push(ConsentChange {
            purpose: POLICY_NOTICE.to_owned(),
            granted: true,
            at: sent_at,
            source: POLICY_CHANGE.to_owned(),
            policy_version: current.clone(),
            evidence: Some(evidence.to_owned()),
            business: policy.business.tag(),
        });
    }
}
