//! `GET /admin/stats` and `GET /admin/businesses/{business}/stats`: the
//! anonymous daily counters retention keeps, of one business.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::auth::Operator;
use crate::http::error::{Answer, ApiError};
use crate::state::AppState;

/// The days `GET /admin/stats` covers (YYYY-MM-DD, UTC, inclusive).
#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The most days one statistics answer covers.
const STATS_MAX_DAYS: u64 = crate::store::stats::KEEP_DAYS;

/// `GET /admin/stats`: the business's anonymous daily counters (default:
/// the last 30 days). They name no contact, so reading them is not
/// audited.
pub async fn stats(
    _: Operator,
    req: actix_web::HttpRequest,
    query: web::Query<StatsQuery>,
    state: web::Data<AppState>,
) -> Answer {
    let business = crate::http::auth::business_of(&req, &state)?;
    use crate::store::stats::{day, parse_day};
    let today = crate::clock::now_secs() / 86_400;
    let parse = |v: &Option<String>, default: u64| match v {
        None => Some(default),
        Some(t) => parse_day(t),
    };
    let to = parse(&query.to, today);
    let from = to.and_then(|to| parse(&query.from, to.saturating_sub(29)));
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::bad_request(
            "from and to are days written YYYY-MM-DD (UTC)",
        ));
    };
    if from > to || to - from >= STATS_MAX_DAYS {
        return Err(ApiError::bad_request(format!(
            "from must not be after to, and at most {STATS_MAX_DAYS} days apart"
        )));
    }
    let days: Vec<String> = (from..=to).map(|d| day(d * 86_400)).collect();
    let all = state.store.stats(&days).await?;
    let counts = crate::store::stats::of_business(&all, &business);
    Ok(HttpResponse::Ok().json(json!({
        "from": day(from * 86_400),
        "to": day(to * 86_400),
        "days": counts,
    })))
}
