//! `/admin/campaigns`: promotional campaigns (see [`crate::campaign`]).
//!
//! - `POST /admin/campaigns`: checks the request, resolves the audience
//!   and stores the campaign: 202 with its id; 400 with what is wrong.
//! - `GET /admin/campaigns`: every campaign, with its status.
//! - `GET /admin/campaigns/{id}`: the report (targeted, skipped by reason,
//!   queued, sent, delivered, read, failed by error code, cancelled,
//!   opt-outs).
//! - `DELETE /admin/campaigns/{id}`: cancels what has not been sent yet.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::campaign::{self, Audience, Member, member_context};
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::campaign::{Campaign, CampaignStatus};
use crate::domain::consent::MARKETING;
use crate::domain::outbound::Recipient;
use crate::domain::{ContactId, ContactKey};
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

async fn audit(state: &AppState, kind: &str, detail: String) {
    use crate::privacy::audit::note;
    let event = AuditEvent {
        at: crate::clock::now_secs(),
        kind: kind.to_owned(),
        contact: None,
        actor: Actor::Admin,
        detail: Some(detail),
    };
    note(state.store.as_ref(), &state.audit, event).await;
}

/// `POST /admin/campaigns`.
pub async fn create(
    _: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let body = crate::http::body::of(&req, payload, &state, MAX_BODY).await?;
    let now = state.clock.now();
    let request = match campaign::parse(&body, &state.campaign_limits.get(), now) {
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
    // sends it.
    let Some(business) = state.businesses.of_number(&request.phone_number_id) else {
        return Err(ApiError::bad_request(format!(
            "phone_number_id {} belongs to no business",
            request.phone_number_id
        )));
    };
    // Until the store keeps each business's contacts apart (issue 20),
    // an audience found by searching every contact cannot be limited to
    // one business: refused rather than crossing businesses.
    if state.businesses.only().is_none() && !matches!(request.audience, Audience::WaIds(_)) {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            "with several businesses, a campaign's audience must list wa_ids".into(),
        ));
    }
    let members = resolve(&state, &business.id, &request.audience).await?;
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
    audit(
        &state,
        "campaign_created",
        format!("campaign {id}: {} contacts", record.targeted),
    )
    .await;
    tracing::info!(campaign = %id, targeted = record.targeted, audience = kind, "campaign accepted");
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/admin/campaigns/{id}")))
        .json(json!({
            "id": id,
            "status": CampaignStatus::Scheduled,
            "targeted": record.targeted,
            "send_at": record.send_at,
            "rate_per_second": record.rate_per_second,
        })))
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
    // Every contact whatsify knows has a data key: page through them and
    // read what decides (tags from the sealed profile, consent).
    let mut members = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = state.store.data_keys(cursor, PAGE).await?;
        let contacts: Vec<ContactKey> = page.iter().map(|(k, _)| k.clone()).collect();
        let briefs = state.store.briefs(&contacts).await?;
        for ((contact, wrapped), brief) in page.iter().zip(briefs) {
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

/// `GET /admin/campaigns`.
pub async fn list(_: Operator, state: web::Data<AppState>) -> Answer {
    let all = state.store.campaigns().await?;
    let rows: Vec<_> = all
        .iter()
        .filter_map(|s| {
            let c: Campaign = serde_json::from_slice(&s.record).ok()?;
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

async fn report(state: &AppState, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(stored) = state.store.campaign(id).await? else {
        return Ok(None);
    };
    let c: Campaign = serde_json::from_slice(&stored.record)
        .map_err(|e| StoreError::Corrupt(format!("campaign record: {e}")))?;
    let counts = state.store.campaign_counts(id).await?;
    let left = state.store.campaign_left(id).await?;
    Ok(Some(campaign::report(&c, stored.status, left, &counts)))
}

/// `GET /admin/campaigns/{id}`.
pub async fn show(_: Operator, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    if !valid_id(&path) {
        return Err(not_found());
    }
    answer_report(&state, &path).await
}

/// 200 with the campaign's report; 404 for an unknown one.
async fn answer_report(state: &AppState, id: &str) -> Answer {
    match report(state, id).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(not_found()),
    }
}

/// `DELETE /admin/campaigns/{id}`: nothing more is dispatched, and what is
/// queued but not sent is recorded as cancelled by the senders.
pub async fn cancel(_: Operator, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let id = path.into_inner();
    if !valid_id(&id) {
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
        audit(&state, "campaign_cancelled", format!("campaign {id}")).await;
        tracing::info!(campaign = %id, "campaign cancelled");
    }
    answer_report(&state, &id).await
}
