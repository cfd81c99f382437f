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

use crate::domain::operator::{Caller, Who};
use crate::domain::{BusinessId, ContactId, ContactKey};
use crate::http::error::ApiError;
use crate::state::AppState;

/// The operators' accounts, over the state's store and keys.
pub fn accounts(state: &AppState) -> crate::operators::Accounts<'_> {
    crate::operators::Accounts {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        audit: &state.audit,
    }
}

/// Who is calling: a live console session (with its CSRF token for a
/// change), an operator's API token, or the break-glass admin token
/// (root). With no admin token and no operator at all, the admin API is
/// off (404).
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    // The console's pages call this API with their session cookie (and
    // the CSRF token for anything that changes something).
    if let Some(caller) = crate::http::session::caller(req, state).await {
        return Ok(caller);
    }
    let root = state.admin_token.get();
    // No credential at all is no guess.
    let Some(header) = req.headers().get("authorization") else {
        return Err(off_or(root.is_some(), state, ApiError::Unauthorized).await);
    };
    let addr = crate::http::throttle::client(req);
    state.throttle.check(addr).map_err(ApiError::Throttled)?;
    let given = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.starts_with(crate::operators::tokens::PREFIX) {
        let accounts = accounts(state);
        if let Some((token, account)) =
            crate::operators::tokens::authenticate(&accounts, given).await?
        {
            state.throttle.succeeded(addr);
            return Ok(account.caller(Who::Token(token.id, account.id.clone())));
        }
    } else if let Some(token) = &root {
        // Compare digests, so neither the content nor the length leaks.
        let a = Sha256::digest(given.as_bytes());
        let b = Sha256::digest(token.expose_secret().as_bytes());
        if bool::from(a.ct_eq(&b)) {
            state.throttle.succeeded(addr);
            return Ok(Caller::root());
        }
    }
    let refused = off_or(root.is_some(), state, ApiError::Unauthorized).await;
    if !matches!(refused, ApiError::Off) {
        crate::http::throttle::refused(req, state, "bearer").await;
    }
    Err(refused)
}

/// `other`, unless the admin API is off: no admin token and no operator.
async fn off_or(root: bool, state: &AppState, other: ApiError) -> ApiError {
    if root {
        return other;
    }
    match state.store.docs(crate::operators::ACCOUNTS).await {
        Ok(list) if list.is_empty() => ApiError::Off,
        Ok(_) => other,
        Err(e) => ApiError::Store(e),
    }
}

/// Authenticates the caller and checks they may use the route (the
/// permission [`crate::http::access::needed`] names, for the business it
/// is about): 403 when not. Answers the caller and that business.
pub async fn authorize(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Caller, Option<BusinessId>), ApiError> {
    let caller = authenticate(req, state).await?;
    let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let need = crate::http::access::needed(req.method(), &pattern);
    let business = if need.scoped {
        Some(business_of(req, state)?)
    } else {
        None
    };
    if caller.may(need.perm, business.as_ref()) {
        Ok((caller, business))
    } else {
        Err(forbidden(&caller))
    }
}

/// The 403 of a caller whose role or businesses do not cover a route.
pub fn forbidden(caller: &Caller) -> ApiError {
    ApiError::Refused(
        actix_web::http::StatusCode::FORBIDDEN,
        format!(
            "your role ({}) or your businesses do not allow this",
            caller.role.as_str()
        ),
    )
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or(ApiError::Off)
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// An authorised admin caller (extracting it authorises the request for
/// its route: [`authorize`]).
pub struct Operator {
    pub caller: Caller,
}

impl Operator {
    /// How the audit log names who acted.
    pub fn by(&self) -> Option<String> {
        Some(self.caller.audit_name())
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Extracted<Operator>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let (caller, _) = authorize(&req, &state).await?;
            Ok(Operator { caller })
        })
    }
}

/// A console API caller with a live session (and CSRF token for a
/// change), allowed the route.
pub struct SignedIn {
    pub caller: Caller,
}

impl FromRequest for SignedIn {
    type Error = ApiError;
    type Future = Extracted<SignedIn>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let Some(caller) = crate::http::session::caller(&req, &state).await else {
                return Err(ApiError::SignInFirst);
            };
            let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
            let need = crate::http::access::needed(req.method(), &pattern);
            // The console's pages name their business in `?business=`
            // (none: every business the caller serves).
            let business = match need.scoped {
                true => chosen(&req, &state)?,
                false => None,
            };
            match caller.may(need.perm, business.as_ref()) {
                true => Ok(SignedIn { caller }),
                false => Err(forbidden(&caller)),
            }
        })
    }
}

/// The business a console request names in `?business=` (404 for an id
/// no business has); `None` when it names none.
pub fn chosen(req: &HttpRequest, state: &AppState) -> Result<Option<BusinessId>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Q {
        business: Option<String>,
    }
    let q = web::Query::<Q>::from_query(req.query_string()).map_err(|_| bad_query())?;
    match q.into_inner().business.filter(|b| !b.is_empty()) {
        None => Ok(None),
        Some(id) => state
            .businesses
            .get(&id)
            .map(|b| Some(b.id.clone()))
            .ok_or_else(|| ApiError::not_found("no such business")),
    }
}

fn bad_query() -> ApiError {
    ApiError::bad_request("the query string does not parse")
}

/// The contact a `/admin/contacts/{id}…` request names (the wa_id or the
/// business-scoped user id), resolved to the customer's one contact of
/// the business the request is about (also given), once the caller is
/// authorised, and who is calling.
pub struct ContactPath(pub ContactKey, pub BusinessId, pub Caller);

impl FromRequest for ContactPath {
    type Error = ApiError;
    type Future = Extracted<ContactPath>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let (caller, business) = authorize(&req, &state).await?;
            let business = match business {
                Some(b) => b,
                None => business_of(&req, &state)?,
            };
            let id = req.match_info().get("id").unwrap_or("");
            let key = contact_of(id, &business, &state).ok_or_else(bad_id)?;
            // Either of a customer's ids names their one contact.
            let key = crate::store::links::canonical(state.store.as_ref(), key).await?;
            Ok(ContactPath(key, business, caller))
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
