//! Delivering one queued integration event to its receiver: the sender
//! dispatches a hook job here when its turn comes. Retried with backoff
//! (by the sender) for [`DELIVERY_WINDOW`], then a dead letter. Each
//! delivery is audited: the receiver, the event and the names of the
//! fields it carried, never their values.

use super::{DELIVERY_WINDOW, EventKind, Hooks, Refused, audit_share, refilter};
use crate::domain::ContactKey;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::outbound::{Job, Message};
use crate::privacy::audit::{Chain, note};
use crate::store::{Store, StoreError};

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver took it.
    Accepted,
    /// The receiver refused it or could not be reached: try again later.
    Retry(String),
    /// Given up: why, and whether the event goes to the dead letters.
    Dead { reason: String, letter: bool },
    /// Not sent, and not to be: why.
    Cancelled(String),
}

impl Hooks {
    /// Posts a hook job's event to its receiver, unless the receiver is
    /// gone, the event waited past [`DELIVERY_WINDOW`] (`last_error`: the
    /// last attempt's failure), or its contact was erased since. `None`:
    /// the job is not an integration event.
    pub async fn deliver(
        &self,
        store: &dyn Store,
        audit: &Chain,
        job: &Job,
        last_error: &str,
        now: u64,
    ) -> Result<Option<Delivered>, StoreError> {
        let Message::Hook {
            receiver,
            event,
            contact,
            body,
            fields,
        } = &job.message
        else {
            return Ok(None);
        };
        let dead = |reason: &str, letter| {
            let reason = reason.to_owned();
            Ok(Some(Delivered::Dead { reason, letter }))
        };
        let Some(to) = self.receiver(receiver).cloned() else {
            return dead("the receiver is no longer configured", false);
        };
        if now > job.created_at + DELIVERY_WINDOW.as_secs() {
            let last = if last_error.is_empty() {
                "no attempt"
            } else {
                last_error
            };
            count(receiver, "dead");
            return dead(&format!("not delivered within 24 hours ({last})"), true);
        }
        // An event about a contact erased since it was queued is not sent;
        // their `contact.erased` is.
        if event != EventKind::ContactErased.name()
            && let Some(about) = ContactKey::parse(contact)
            && let Some(erased_at) = store.suppressed(&about).await?
            && job.created_at <= erased_at
        {
            return Ok(Some(Delivered::Cancelled("the contact was erased".into())));
        }
        // A field taken off the receiver's list since is not sent.
        let allowed = |f: &String| to.fields.iter().any(|g| g.name() == f);
        let (body, fields) = if fields.iter().all(allowed) {
            (body.clone(), fields.clone())
        } else {
            match refilter(body, &to.fields) {
                Some(b) => b,
                None => return dead("the queued event cannot be read", false),
            }
        };
        match self.post(&to, &job.id, body.as_bytes(), now).await {
            Ok(()) => {
                if audit_share(store, receiver, event, contact).await {
                    let shared = AuditEvent {
                        at: now,
                        kind: "data_shared".to_owned(),
                        contact: Some(contact.clone()),
                        actor: Actor::System,
                        detail: Some(format!("{receiver}: {event} [{}]", fields.join(", "))),
                        business: None,
                        by: None,
                    };
                    note(store, audit, shared).await;
                }
                count(receiver, "delivered");
                Ok(Some(Delivered::Accepted))
            }
            Err(Refused(reason)) => {
                count(receiver, "retry");
                Ok(Some(Delivered::Retry(reason)))
            }
        }
    }
}

fn count(receiver: &str, outcome: &str) {
    crate::metrics::global()
        .integration_deliveries
        .with_label_values(&[receiver, outcome])
        .inc();
}
