//! `GET /admin/audit` and `GET /admin/businesses/{business}/audit`: the
//! privacy audit log of one business, newest first, one page at a time,
//! with what was checked of its hash chain (see
//! [`crate::privacy::audit_view`]: the chain is the whole service's, so
//! every entry read is checked, the business's or not, and only the
//! business's are shown) and its requests open for more than a week (from
//! the store's request index, not the log).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::domain::BusinessId;
use crate::http::auth::{Operator, bad_id, contact_of};
use crate::http::error::{Answer, ApiError};
use crate::privacy::audit_view::{self, Cursor, Filter};
use crate::state::AppState;

/// Entries per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one page shows.
const MAX_LIMIT: usize = 1000;

/// Filters and paging of `GET /admin/audit`.
#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    /// A wa_id, a business-scoped user id, or a pseudonymous contact id.
    contact: Option<String>,
    kind: Option<String>,
    /// From and to (Unix s, inclusive).
    from: Option<u64>,
    to: Option<u64>,
    /// Entries per page (1 to [`MAX_LIMIT`]).
    limit: Option<usize>,
    /// The `next` cursor of the page before.
    before: Option<String>,
    /// `full`: check the whole chain, not only the page.
    verify: Option<String>,
}

pub async fn audit(
    _: Operator,
    req: actix_web::HttpRequest,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Answer {
    let business = crate::http::auth::business_of(&req, &state)?;
    // With one business served, every entry is its own (as before
    // businesses existed); with several, only those naming this one.
    let only = state.businesses.only().is_none().then(|| business.clone());
    let q = query.into_inner();
    let contact = match &q.contact {
        None => None,
        Some(id) => {
            let key = match crate::domain::ContactKey::parse(id) {
                Some(k) => k,
                None => contact_of(id, &business, &state).ok_or_else(bad_id)?,
            };
            // Either id of a customer known by both names their one contact.
            let k = crate::store::links::canonical(state.store.as_ref(), key).await?;
            Some(k.as_str().to_owned())
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is from 1 to {MAX_LIMIT}"
        )));
    }
    let cursor = match q.before.as_deref().map(Cursor::parse) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            return Err(ApiError::bad_request(
                "before is the next cursor of an earlier answer",
            ));
        }
    };
    let full = match q.verify.as_deref() {
        None | Some("page") => false,
        Some("full") => true,
        Some(_) => return Err(ApiError::bad_request("verify is page or full")),
    };
    let filter = Filter {
        contact,
        kind: q.kind,
        from: q.from,
        to: q.to,
        business: only.clone(),
    };
    let store = state.store.as_ref();
    let now = crate::clock::now_secs();
    let page = audit_view::page(store, &state.audit, cursor.as_ref(), &filter, limit).await?;
    let chain = if full {
        audit_view::verify_all(store, &state.audit).await?
    } else {
        page.chain.clone()
    };
    if let Some(seq) = chain.broken_at {
        tracing::error!(seq, "audit log chain broken");
    }
    let mut requests = audit_view::requests(store, now, state.erase_window).await?;
    if let Some(b) = &only {
        requests.retain(|r| BusinessId::of_tag(r.business.as_ref()) == *b);
    }
    let overdue = crate::privacy::audit::overdue_of(&requests, now);
    let shown: Vec<serde_json::Value> = page
        .entries
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["overdue"] = json!(overdue.contains(&e.seq));
            v
        })
        .collect();
    let mut chain_json = serde_json::to_value(&chain).unwrap_or_default();
    // The name older readers use for the count checked.
    chain_json["entries"] = json!(chain.verified_entries);
    chain_json["scope"] = json!(if full { "full" } else { "page" });
    Ok(HttpResponse::Ok().json(json!({
        "chain": chain_json,
        "overdue_requests": overdue,
        "entries": shown,
        "next": page.next.map(|c| c.to_string()),
    })))
}
