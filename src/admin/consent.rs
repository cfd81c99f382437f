//! `POST /admin/contacts/{id}/consent`: a consent the customer gave the
//! support team, recorded with source `admin`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::BODY_MAX;
use crate::http::auth::ContactPath;
use crate::http::error::{Answer, ApiError};
use crate::state::AppState;

/// The body of `POST /admin/contacts/{id}/consent`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    purpose: String,
    granted: bool,
    /// Where the support team got it (a ticket or call reference); no
    /// personal data.
    #[serde(default)]
    reference: Option<String>,
}

/// The longest reference accepted.
const REFERENCE_MAX: usize = 100;

/// `POST /admin/contacts/{id}/consent`: the support team records a grant
/// or a withdrawal the customer gave them (by phone, on paper), with
/// source `admin`. An erased contact cannot be re-subscribed (409).
pub async fn record_consent(
    ContactPath(contact, business, caller): ContactPath,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    use crate::domain::consent::MARKETING;
    let body = crate::http::body::of(&req, payload, &state, BODY_MAX).await?;
    let bad = |m: String| Err(ApiError::bad_request(m));
    let body: ConsentBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        // serde's message names the field and the position, never values.
        Err(e) => {
            return bad(format!(
                "the body must be {{\"purpose\": \"marketing\", \"granted\": true|false, \"reference\": \"...\"}}: {e}"
            ));
        }
    };
    if body.purpose != MARKETING {
        return bad(format!(
            "purpose must be \"{MARKETING}\" (service needs no consent: the customer writing to us is enough)"
        ));
    }
    let reference = body.reference.unwrap_or_default();
    if reference.chars().count() > REFERENCE_MAX || reference.chars().any(char::is_control) {
        return bad(format!(
            "reference must be at most {REFERENCE_MAX} printable characters (a ticket or call reference, no personal data)"
        ));
    }
    let change = record(
        &state,
        (&contact, &business, &caller),
        body.granted,
        &reference,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "purpose": change.purpose,
        "granted": change.granted,
        "since": change.at,
        "source": change.source,
        "policy_version": change.policy_version,
    })))
}

/// Records a marketing grant or withdrawal the customer gave the support
/// team (source `admin`, evidence `admin:<reference>`), tells the
/// receivers and audits it as the caller's. An erased contact cannot be
/// re-subscribed (409).
pub(super) async fn record(
    state: &AppState,
    (contact, business, caller): (
        &crate::domain::ContactKey,
        &crate::domain::BusinessId,
        &crate::domain::operator::Caller,
    ),
    granted: bool,
    reference: &str,
) -> Result<crate::domain::consent::ConsentChange, ApiError> {
    use crate::domain::consent::MARKETING;
    use crate::privacy::consent::ADMIN_SOURCE;
    if state.store.suppressed(contact).await?.is_some() {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            "this contact's data was erased at their request; they cannot be subscribed again"
                .into(),
        ));
    }
    let change = crate::domain::consent::ConsentChange {
        purpose: MARKETING.to_owned(),
        granted,
        at: crate::clock::now_secs(),
        source: ADMIN_SOURCE.to_owned(),
        // The policy of the business the contact wrote to.
        policy_version: state
            .businesses
            .get(business.as_str())
            .map_or(&state.policy_version, |b| &b.policy_version)
            .clone(),
        evidence: (!reference.is_empty()).then(|| format!("admin:{reference}")),
        business: business.tag(),
    };
    state.store.append_consent(contact, change.clone()).await?;
    crate::metrics::global().counted(&[], std::iter::once(&change));
    if !state.hooks.receivers().is_empty() {
        use crate::integrations::{EventKind, Field, HookEvent};
        let event = HookEvent::new(
            format!("{contact}.admin.{}.consent.changed", uuid::Uuid::new_v4()),
            EventKind::ConsentChanged,
            contact.clone(),
            change.at,
        )
        .with(
            Field::Consent,
            json!({
                "purpose": change.purpose,
                "granted": change.granted,
                "at": change.at,
                "source": change.source,
                "policy_version": change.policy_version,
            }),
        );
        super::notify(state, &event, &Default::default()).await?;
    }
    let mut event = crate::privacy::audit::of_consent(contact.as_str(), &change);
    event.by = Some(caller.audit_name());
    crate::privacy::audit::note(state.store.as_ref(), &state.audit, event).await;
    tracing::info!(contact = %contact, granted = change.granted, "admin: consent recorded");
    Ok(change)
}
