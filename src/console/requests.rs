//! The console's privacy requests page (`/console/requests`, in
//! [`super::PAGES`]): its data and its script. One list holds the
//! requests customers made in the chat (MY DATA, DELETE MY DATA, from the
//! audit log's request index) and those the privacy desk logged (email,
//! phone, letter), each with its channel, its legal deadline (the
//! business's `request_deadline_days`) and its state. The script logs and
//! carries out desk requests through the admin API (an admin); an auditor
//! sees the list only.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::Chosen;
use crate::domain::BusinessId;
use crate::http::auth::SignedIn;
use crate::http::error::{Answer, ApiError};
use crate::state::AppState;

const REQUESTS_JS: &str = include_str!("assets/requests.js");

/// The page's own routes: its script.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/requests.js", web::get().to(script));
}

/// `GET /console/requests.js` (no session needed: it holds nothing but
/// code).
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(REQUESTS_JS)
}

/// How near a request is to its deadline: `done`, `overdue` past it,
/// `due` once open a week (our own bound), else `ok`.
fn urgency(open: bool, at: u64, due_at: u64, now: u64) -> &'static str {
    use crate::privacy::audit::OPEN_REQUEST_FLAG_SECS;
    match open {
        false => "done",
        true if now >= due_at => "overdue",
        true if now >= at + OPEN_REQUEST_FLAG_SECS => "due",
        true => "ok",
    }
}

/// The Unix time of the start of the day `date` (`YYYY-MM-DD`) names.
fn unix_day(date: &str) -> u64 {
    use crate::domain::desk::{parse_date, unix_midnight};
    parse_date(date).and_then(unix_midnight).unwrap_or(0)
}

/// The requests made in the chat, as rows (`business`: only its own).
async fn chat_rows(
    state: &AppState,
    business: Option<&BusinessId>,
    now: u64,
) -> Result<Vec<Value>, ApiError> {
    let found = crate::privacy::audit_view::requests(state.store.as_ref(), now, state.erase_window);
    let mut found = found.await.map_err(ApiError::console)?;
    if let Some(b) = business {
        found.retain(|r| BusinessId::of_tag(r.business.as_ref()) == *b);
    }
    Ok(found
        .into_iter()
        .rev()
        .map(|r| {
            let b = BusinessId::of_tag(r.business.as_ref());
            let days = state.businesses.deadline_days(&b);
            let due_at = r.at + u64::from(days) * 86_400;
            json!({
                "source": "chat",
                "business": b.as_str(),
                "channel": "whatsapp",
                "seq": r.seq,
                "what": r.what,
                "contact": r.contact,
                "actor": r.actor,
                "at": r.at,
                "state": r.state,
                "closed_at": r.closed_at,
                "age_seconds": r.closed_at.unwrap_or(now).saturating_sub(r.at),
                "due_at": due_at,
                "deadline_days": days,
                "urgency": urgency(r.closed_at.is_none(), r.at, due_at, now),
            })
        })
        .collect())
}

/// The privacy desk's requests of `businesses`, as rows.
async fn desk_rows(
    state: &AppState,
    businesses: &[BusinessId],
    now: u64,
) -> Result<Vec<Value>, ApiError> {
    let desk = crate::privacy::desk::Desk {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        audit: &state.audit,
    };
    let mut rows = Vec::new();
    for b in businesses {
        for r in desk.list(b).await.map_err(ApiError::console)? {
            let at = unix_day(&r.received);
            // Due at the end of the deadline's day.
            let due_at = unix_day(&r.deadline) + 86_399;
            let mut row = crate::privacy::desk::view(&r, now);
            let extra = json!({
                "source": "desk",
                "business": b.as_str(),
                "what": r.kind.as_str(),
                "at": at,
                "due_at": due_at,
                "age_seconds": now.saturating_sub(at),
                "urgency": urgency(r.state.is_open(), at, due_at, now),
            });
            if let (Some(row), Value::Object(extra)) = (row.as_object_mut(), extra) {
                row.extend(extra);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// `GET /console/api/requests`: the privacy requests of the business
/// chosen (or of every business the caller serves), made in the chat or
/// logged at the desk, the open ones first (the oldest of them on top),
/// each with its channel, deadline and state.
pub async fn requests_data(
    signed: SignedIn,
    chosen: web::Query<Chosen>,
    state: web::Data<AppState>,
) -> Answer {
    let business = chosen.business(&state, &signed.caller)?.map(|b| b.id);
    let now = state.clock.now();
    let mut rows = chat_rows(&state, business.as_ref(), now).await?;
    let desks: Vec<BusinessId> = match &business {
        Some(b) => vec![b.clone()],
        None => (state.businesses.all().iter())
            .filter(|b| signed.caller.serves(&b.id))
            .map(|b| b.id.clone())
            .collect(),
    };
    rows.extend(desk_rows(&state, &desks, now).await?);
    rows.sort_by_key(|r| {
        let open = r["urgency"] != "done";
        (!open, open.then(|| r["at"].as_u64()))
    });
    let count = |u: &str| rows.iter().filter(|r| r["urgency"] == u).count();
    let days = match &business {
        Some(b) => state.businesses.deadline_days(b),
        None => crate::domain::desk::DEFAULT_DEADLINE_DAYS,
    };
    Ok(HttpResponse::Ok().json(json!({
        "now": now,
        "due_after_days": crate::privacy::audit::OPEN_REQUEST_FLAG_SECS / 86_400,
        "deadline_days": days,
        "open": rows.len() - count("done"),
        "due": count("due"),
        "overdue": count("overdue"),
        "requests": rows,
    })))
}
