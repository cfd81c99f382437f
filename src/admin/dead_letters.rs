//! `GET /admin/outbox/dead-letters` and
//! `GET /admin/businesses/{business}/outbox/dead-letters`: messages and
//! integration events given up after every attempt failed, with the last
//! error, of one business: those sent from its numbers. With one business
//! served, every dead letter is its own; with several, a letter that
//! names no number of the business (an integration event, one that
//! cannot be opened) is listed under none.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::contact_sealer;
use crate::http::auth::Operator;
use crate::http::error::Answer;
use crate::outbox::sender::{Letter, dead_context};
use crate::state::AppState;

/// Most dead letters listed at once.
const DEAD_LETTERS_LIMIT: usize = 500;

/// `GET /admin/outbox/dead-letters`.
pub async fn dead_letters(
    _: Operator,
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Answer {
    let business = crate::http::auth::business_of(&req, &state)?;
    let several = state.businesses.only().is_none();
    let letters = state.store.dead_letters(DEAD_LETTERS_LIMIT).await?;
    let mut sealers = std::collections::HashMap::new();
    for d in &letters {
        if !sealers.contains_key(&d.contact) {
            let sealer = contact_sealer(&state, &d.contact).await?;
            sealers.insert(d.contact.clone(), sealer);
        }
    }
    let opened = letters.iter().map(|d| {
        let letter: Option<Letter> = sealers
            .get(&d.contact)
            .and_then(Option::as_ref)
            .and_then(|k| k.open(&d.entry.sealed, &dead_context(&d.contact)).ok())
            .and_then(|p| serde_json::from_slice(&p).ok());
        (d, letter)
    });
    // The business's own: sent from one of its numbers.
    let own = |letter: &Option<Letter>| {
        let number = letter.as_ref().and_then(|l| l.job.as_ref());
        let number = number.map_or("", |j| j.phone_number_id.as_str());
        let owner = state.businesses.of_number(number).map(|b| &b.id);
        !several || (!number.is_empty() && owner == Some(&business))
    };
    let items: Vec<_> = opened
        .filter(|(_, letter)| own(letter))
        .map(|(d, letter)| {
            match letter {
                // An integration event its receiver never took: named by
                // the receiver, the event and the contact it is about.
                Some(Letter {
                    job: Some(job),
                    attempts,
                    reason,
                    at,
                    ..
                }) if matches!(job.message, crate::domain::outbound::Message::Hook { .. }) => {
                    let crate::domain::outbound::Message::Hook {
                        receiver,
                        event,
                        contact,
                        ..
                    } = &job.message
                    else {
                        return json!({});
                    };
                    json!({
                        "contact": contact,
                        "job": job.id,
                        "kind": "hook",
                        "receiver": receiver,
                        "event": event,
                        "queued_at": job.created_at,
                        "attempts": attempts,
                        "reason": reason,
                        "at": at,
                    })
                }
                Some(l) => json!({
                    "contact": d.contact.as_str(),
                    "job": l.job.as_ref().map(|j| j.id.clone()),
                    "kind": l.job.as_ref().map(|j| j.message.kind()),
                    "phone_number_id": l.job.as_ref().map(|j| j.phone_number_id.clone()),
                    "queued_at": l.job.as_ref().map(|j| j.created_at),
                    "attempts": l.attempts,
                    "code": l.code,
                    "reason": l.reason,
                    "at": l.at,
                }),
                None => json!({
                    "contact": d.contact.as_str(),
                    "reason": "this dead letter cannot be opened with the current key",
                }),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "dead_letters": items })))
}
