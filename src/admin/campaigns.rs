//! `/admin/campaigns` and `/admin/businesses/{business}/campaigns`:
//! promotional campaigns (see [`crate::campaign`]), each of one business
//! (the one whose number sends it).
//!
//! - `POST …/campaigns`: checks the request, resolves the audience and
//!   stores the campaign: 202 with its id; 400 with what is wrong (a
//!   number that is not the business's among it).
//! - `GET …/campaigns`: the business's campaigns, with their status.
//! - `GET …/campaigns/{id}`: the report (targeted, skipped by reason,
//!   queued, sent, delivered, read, failed by error code, cancelled,
//!   opt-outs); 404 for another business's campaign.
//! - `DELETE …/campaigns/{id}`: cancels what has not been sent yet.
//!
//! Unprefixed, the routes are those of the one business served (409 with
//! several: see [`crate::http::auth::business_of`]).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::campaign::{self, Audience, Member, member_context};
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::campaign::{Campaign, CampaignStatus};
use crate::domain::consent::MARKETING;
use crate::domain::outbound::Recipient;
use crate::domain::{BusinessId, ContactId, ContactKey};
use crate::http::auth::Operator;
use crate::http::error::{Answer, ApiError};
use crate::privacy::consent;
use crate::state::AppState;
use crate::store::StoreError;

/// The largest campaign request body: 100,000 wa_ids with variables.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Contacts read per page while resolving a tag or consent audience.
const PAGE: usize = 500;

fn not_found() -> ApiError {
    ApiError::not_found("no such campaign")
}

/// A campaign id as whatsify makes them (hex).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn audit(
    (state, op): (&AppState, &Operator),
    business: &BusinessId,
    kind: &str,
    detail: String,
) {
    use crate::privacy::audit::note;
    let event = AuditEvent {
        at: crate::clock::now_secs(),
        kind: kind.to_owned(),
        contact: None,
        actor: Actor::Admin,
        detail: Some(detail),
        business: business.tag(),
        by: op.by(),
    };
    note(state.store.as_ref(), &state.audit, event).await;
}

/// `POST /admin/campaigns`.
pub async fn create(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let business = crate::http::auth::business_of(&req, &state)?;
    let body = crate::http::body::of(&req, payload, &state, MAX_BODY).await?;
    let now = state.clock.now();
    let limits = limits_of(&state, &business);
    let request = match campaign::parse(&body, &limits, now) {
        Ok(r) => r,
        Err(message) => return Err(ApiError::bad_request(message)),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (kind, tags) = match &request.audience {
        Audience::WaIds(_) => ("wa_ids", Vec::new()),
        Audience::Tags(t) => ("tags", t.clone()),
        Audience::AllConsenting => ("all_consenting", Vec::new()),
    };
    // The campaign reaches the contacts of the business whose number
    // sends it: one of the business's own numbers.
    if owner(&state, &request.phone_number_id).as_ref() != Some(&business) {
        return Err(ApiError::bad_request(format!(
            "phone_number_id {} is not a number of business {business}",
            request.phone_number_id
        )));
    }
    let members = resolve(&state, &business, &request.audience).await?;
    // Listed customers it never met become its contacts now, so that its
    // removal reaches what the campaign will keep about them.
    if matches!(request.audience, Audience::WaIds(_)) {
        let keys: Vec<ContactKey> = members
            .iter()
            .filter_map(|m| ContactKey::parse(&m.contact))
            .collect();
        state.store.enlist(&business, &keys).await?;
    }
    let mut audience = Vec::with_capacity(members.len());
    for m in &members {
        let sealed = serde_json::to_vec(m)
            .ok()
            .and_then(|plain| state.keyring.seal_system(&plain, &member_context(&id)).ok());
        match sealed {
            Some(sealed) => {
                // The key in the clear: an erasure finds the entry by it.
                let key = ContactKey::parse(&m.contact);
                let mut entry = key
                    .map(|k| crate::store::audience_prefix(&k))
                    .unwrap_or_default();
                entry.extend_from_slice(&sealed);
                audience.push(entry);
            }
            None => {
                return Err(ApiError::Refused(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ("the audience could not be sealed").to_string(),
                ));
            }
        }
    }
    let record = Campaign {
        id: id.clone(),
        name: request.name,
        template: request.template,
        audience: kind.to_owned(),
        tags,
        phone_number_id: request.phone_number_id,
        rate_per_second: request.rate_per_second,
        send_at: request.send_at.unwrap_or(now),
        created_at: now,
        opt_out: request.opt_out,
        targeted: audience.len() as u64,
        business: Some(business.clone()),
    };
    let Ok(json) = serde_json::to_vec(&record) else {
        return Err(ApiError::Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            ("the campaign could not be stored").to_string(),
        ));
    };
    if let Err(e) = state.store.create_campaign(&id, &json, audience).await {
        return Err(e.into());
    }
    // This instance's dispatcher starts it now, not at its next look.
    state.wake.campaigns.notify_one();
    audit(
        (&state, &op),
        &business,
        "campaign_created",
        format!("campaign {id}: {} contacts", record.targeted),
    )
    .await;
    tracing::info!(campaign = %id, targeted = record.targeted, audience = kind, "campaign accepted");
    // Where its report is read: under the prefix the request came by.
    let location = match req.match_info().get("business") {
        Some(_) => format!("/admin/businesses/{business}/campaigns/{id}"),
        None => format!("/admin/campaigns/{id}"),
    };
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", location))
        .json(json!({
            "id": id,
            "status": CampaignStatus::Scheduled,
            "targeted": record.targeted,
            "send_at": record.send_at,
            "rate_per_second": record.rate_per_second,
        })))
}

/// The business that owns `phone_number_id`, if any.
fn owner(state: &AppState, phone_number_id: &str) -> Option<BusinessId> {
    (state.businesses.of_number(phone_number_id)).map(|b| b.id.clone())
}

/// The campaign limits in force, with the business's default sender:
/// `meta.phone_number_id` when it is the business's, else the business's
/// first number.
fn limits_of(state: &AppState, business: &BusinessId) -> campaign::Limits {
    let mut limits = state.campaign_limits.get();
    let own = |n: &String| owner(state, n).as_ref() == Some(business);
    if !limits.phone_number_id.as_ref().is_some_and(own) {
        let first = state.businesses.get(business.as_str());
        let first = first.and_then(|b| b.phone_number_ids.first().cloned());
        limits.phone_number_id = first.or(limits.phone_number_id);
    }
    limits
}

/// The audience's members: the wa_ids given, or the contacts found.
async fn resolve(
    state: &AppState,
    business: &crate::domain::BusinessId,
    audience: &Audience,
) -> Result<Vec<Member>, StoreError> {
    if let Audience::WaIds(ids) = audience {
        return Ok(ids
            .iter()
            .filter_map(|(wa_id, vars)| {
                let id = ContactId::from_parts(Some(wa_id), None)?;
                Some(Member {
                    contact: state
                        .pseudonymizer
                        .contact_key_in(business, &id)
                        .as_str()
                        .to_owned(),
                    to: Some(Recipient::WaId(wa_id.clone())),
                    vars: vars.clone(),
                })
            })
            .collect());
    }
    // Page through the business's own contacts (its owner index) and
    // read what decides (tags from the sealed profile, consent); a contact
    // without a data key has nothing left to go by.
    let mut members = Vec::new();
    let mut cursor = None;
    loop {
        let (contacts, next) = state.store.members(business, cursor, PAGE).await?;
        let briefs = state.store.briefs(&contacts).await?;
        for (contact, brief) in contacts.iter().zip(briefs) {
            let Some(wrapped) = &brief.data_key else {
                continue;
            };
            let wanted = match audience {
                Audience::AllConsenting => {
                    brief.suppressed.is_none() && consent::granted(&brief.consent, MARKETING)
                }
                Audience::Tags(tags) => {
                    let profile = state
                        .keyring
                        .unwrap(contact, wrapped)
                        .ok()
                        .and_then(|sealer| {
                            let p = brief.profile.as_deref()?;
                            sealer
                                .open(p, &crate::domain::profile::profile_context(contact))
                                .ok()
                        })
                        .and_then(|p| {
                            serde_json::from_slice::<crate::domain::profile::Profile>(&p).ok()
                        });
                    profile.is_some_and(|p| tags.iter().any(|t| p.contact.tags.contains(t)))
                }
                Audience::WaIds(_) => false,
            };
            if wanted {
                members.push(Member {
                    contact: contact.as_str().to_owned(),
                    to: None,
                    vars: Default::default(),
                });
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(members)
}

/// `GET /admin/campaigns`: the business's campaigns.
pub async fn list(_: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = crate::http::auth::business_of(&req, &state)?;
    let all = state.store.campaigns().await?;
    let rows: Vec<_> = all
        .iter()
        .filter_map(|s| {
            let c: Campaign = serde_json::from_slice(&s.record).ok()?;
            if c.business_in(|n| owner(&state, n)) != business {
                return None;
            }
            Some(json!({
                "id": c.id,
                "name": c.name,
                "status": s.status,
                "template": c.template["name"],
                "targeted": c.targeted,
                "send_at": c.send_at,
                "created_at": c.created_at,
            }))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "campaigns": rows })))
}

/// The report of campaign `id` of `business`; `None` when there is no
/// such campaign or it is another business's.
async fn report(
    state: &AppState,
    business: &BusinessId,
    id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(stored) = state.store.campaign(id).await? else {
        return Ok(None);
    };
    let c: Campaign = serde_json::from_slice(&stored.record)
        .map_err(|e| StoreError::Corrupt(format!("campaign record: {e}")))?;
    if c.business_in(|n| owner(state, n)) != *business {
        return Ok(None);
    }
    let counts = state.store.campaign_counts(id).await?;
    let left = state.store.campaign_left(id).await?;
    Ok(Some(campaign::report(&c, stored.status, left, &counts)))
}

/// The business and the campaign id a `…/campaigns/{id}` request names
/// (404 for an id whatsify never makes).
fn campaign_path(req: &HttpRequest, state: &AppState) -> Result<(BusinessId, String), ApiError> {
    let business = crate::http::auth::business_of(req, state)?;
    let id = req.match_info().get("id").unwrap_or_default();
    if !valid_id(id) {
        return Err(not_found());
    }
    Ok((business, id.to_owned()))
}

/// `GET /admin/campaigns/{id}`.
pub async fn show(_: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let (business, id) = campaign_path(&req, &state)?;
    answer_report(&state, &business, &id).await
}

/// 200 with the campaign's report; 404 for an unknown one (or another
/// business's).
async fn answer_report(state: &AppState, business: &BusinessId, id: &str) -> Answer {
    match report(state, business, id).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(not_found()),
    }
}

/// `DELETE /admin/campaigns/{id}`: nothing more is dispatched, and what is
/// queued but not sent is recorded as cancelled by the senders.
pub async fn cancel(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let (business, id) = campaign_path(&req, &state)?;
    // Another business's campaign is not there for this one.
    if report(&state, &business, &id).await?.is_none() {
        return Err(not_found());
    }
    let moved = state
        .store
        .set_campaign_status(
            &id,
            &[
                CampaignStatus::Scheduled,
                CampaignStatus::Running,
                CampaignStatus::Dispatched,
            ],
            CampaignStatus::Cancelled,
        )
        .await;
    if moved? {
        audit(
            (&state, &op),
            &business,
            "campaign_cancelled",
            format!("campaign {id}"),
        )
        .await;
        tracing::info!(campaign = %id, "campaign cancelled");
    }
    answer_report(&state, &business, &id).await
}
