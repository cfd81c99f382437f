//! Who may call: the admin bearer token or a live console session
//! ([`authorize`]), as extractors a handler names in its arguments —
//! [`Operator`] for any admin call, [`ContactPath`] for
//! `/admin/contacts/{id}…` (authorised first, then the id resolved to the
//! customer's one contact), [`SignedIn`] for the console's own API. A
//! refusal is an [`ApiError`], answered in one place.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{BusinessId, ContactId, ContactKey};
use crate::http::error::ApiError;
use crate::state::AppState;

/// Whether the caller may use the admin API: `Ok` for a live console
/// session (with its CSRF token for a change) or the right bearer token.
pub async fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = state.admin_token.get() else {
        return Err(ApiError::Off);
    };
    // The console's pages call this API with their session cookie (and
    // the CSRF token for anything that changes something).
    if crate::http::session::allows(req, state).await {
        return Ok(());
    }
    // No credential at all is no guess.
    let Some(header) = req.headers().get("authorization") else {
        return Err(ApiError::Unauthorized);
    };
    let addr = crate::http::throttle::client(req);
    state.throttle.check(addr).map_err(ApiError::Throttled)?;
    let given = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests, so neither the content nor the length leaks.
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.expose_secret().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        state.throttle.succeeded(addr);
        Ok(())
    } else {
        crate::http::throttle::refused(req, state, "bearer").await;
        Err(ApiError::Unauthorized)
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or(ApiError::Off)
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// An authorised admin caller (extracting it authorises the request).
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Extracted<Operator>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            authorize(&req, &state).await.map(|()| Operator)
        })
    }
}

/// A console API caller with a live session (and CSRF token for a change).
pub struct SignedIn;

impl FromRequest for SignedIn {
    type Error = ApiError;
    type Future = Extracted<SignedIn>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            match crate::http::session::allows(&req, &state).await {
                true => Ok(SignedIn),
                false => Err(ApiError::SignInFirst),
            }
        })
    }
}

/// The contact a `/admin/contacts/{id}…` request names (the wa_id or the
/// business-scoped user id), resolved to the customer's one contact of
/// the business the request is about (also given), once the caller is
/// authorised.
pub struct ContactPath(pub ContactKey, pub BusinessId);

impl FromRequest for ContactPath {
    type Error = ApiError;
    type Future = Extracted<ContactPath>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            authorize(&req, &state).await?;
            let business = business_of(&req, &state)?;
            let id = req.match_info().get("id").unwrap_or("");
            let key = contact_of(id, &business, &state).ok_or_else(bad_id)?;
            // Either of a customer's ids names their one contact.
            let key = crate::store::links::canonical(state.store.as_ref(), key).await?;
            Ok(ContactPath(key, business))
        })
    }
}

/// The answer to an id that is neither kind.
pub fn bad_id() -> ApiError {
    ApiError::bad_request("the id must be a wa_id (digits) or a business-scoped user id")
}

/// The contact key of a wa_id (digits) or business-scoped user id, as a
/// contact of `business`.
pub fn contact_of(id: &str, business: &BusinessId, state: &AppState) -> Option<ContactKey> {
    let digits = id.chars().all(|c| c.is_ascii_digit());
    let id = ContactId::from_parts(digits.then_some(id), (!digits).then_some(id))?;
    Some(state.pseudonymizer.contact_key_in(business, &id))
}

/// The business a request is about: `{business}` in its path (404 when
/// no business has that id), else the one business served. With several,
/// a route without the prefix answers 409 naming the route to use.
pub fn business_of(req: &HttpRequest, state: &AppState) -> Result<BusinessId, ApiError> {
    if let Some(id) = req.match_info().get("business") {
        // A business removed and gone from the settings still has its
        // audit log (the deletion certificate) to read.
        let removed = || {
            state
                .removed
                .snapshot()
                .ids
                .contains(id)
                .then(|| BusinessId::parse(id))
                .flatten()
        };
        return state
            .businesses
            .get(id)
            .map(|b| b.id.clone())
            .or_else(removed)
            .ok_or_else(|| ApiError::not_found("no such business"));
    }
    match state.businesses.only() {
        Some(b) => Ok(b.id.clone()),
        None => {
            let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
            let tail = route.strip_prefix("/admin").unwrap_or(&route);
            Err(ApiError::Refused(
                actix_web::http::StatusCode::CONFLICT,
                format!(
                    "several businesses are served: use /admin/businesses/{{business}}{tail} \
                     (GET /admin/businesses lists them)"
                ),
            ))
        }
    }
}
