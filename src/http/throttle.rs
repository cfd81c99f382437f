//! The HTTP side of the failed-credential throttle
//! ([`crate::state::throttle`]): whose address a request is, the 429
//! answer, and the audit of each refused credential.

use std::net::IpAddr;

use crate::state::throttle::Failure;

/// The address a request came from, as this server sees it (behind a
/// proxy: the proxy's; `X-Forwarded-For` is not trusted, anyone can write
/// it).
pub fn client(req: &actix_web::HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

/// Counts a refused credential (`how`: `bearer` or `sign-in`) from the
/// request's address and audits it: when, how, and a keyed hash of the
/// address; never what was tried.
pub async fn refused(req: &actix_web::HttpRequest, state: &crate::state::AppState, how: &str) {
    let addr = client(req);
    let spent = state.throttle.failed(addr) == Failure::Spent;
    let tag = state
        .pseudonymizer
        .tag("admin-client-address", &addr.to_string());
    let short = tag.get(..16).unwrap_or(&tag);
    tracing::warn!(how, client = short, spent, "admin credential refused");
    let detail = if spent {
        format!("{how} refused, client {short}; it now waits before trying again")
    } else {
        format!("{how} refused, client {short}")
    };
    let event = crate::domain::audit::AuditEvent {
        at: crate::clock::now_secs(),
        kind: "admin_auth_failed".to_owned(),
        contact: None,
        actor: crate::domain::audit::Actor::Admin,
        detail: Some(detail),
        business: None,
        by: None,
    };
    crate::privacy::audit::note(state.store.as_ref(), &state.audit, event).await;
}
