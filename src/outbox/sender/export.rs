//! A customer's copy of their data: built when its turn comes, uploaded
//! and sent as a document, audited.

use super::*;

impl Sender {
    /// Builds the contact's export (never stored), uploads it as a JSON
    /// file and sends it as a document.
    pub(super) async fn send_export(
        &self,
        contact: &ContactKey,
        sealer: Option<&Sealer>,
        job: &Job,
        now: u64,
    ) -> Result<Answer, StoreError> {
        let id = match &job.to {
            Recipient::WaId(w) => w.clone(),
            Recipient::UserId(u) => u.clone(),
        };
        let business = BusinessId::of_tag(self.business_of(&job.phone_number_id).as_ref());
        let (store, keyring) = (self.store.as_ref(), &self.keyring);
        let disclosures =
            crate::privacy::hold::disclosures(store, keyring, (&business, contact)).await?;
        let doc = crate::privacy::export::build(
            self.store.as_ref(),
            sealer,
            contact,
            &id,
            self.retention_days,
            &disclosures,
            now,
        )
        .await?;
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let media = match self
            .graph
            .upload(&job.phone_number_id, bytes, "application/json", EXPORT_FILE)
            .await
        {
            Ok(media) => media,
            Err(f) => return Ok(Answer::Failed(f)),
        };
        let document = Job {
            message: Message::Media {
                media: "document".into(),
                source: MediaRef::Id(media),
                caption: Some("A copy of the data we keep about you.".into()),
                filename: Some(EXPORT_FILE.into()),
            },
            ..job.clone()
        };
        Ok(self.graph.send(&document).await)
    }

    pub(super) async fn audit_export(&self, contact: &ContactKey, run: &Run, kind: &str, at: u64) {
        use crate::domain::audit::{Actor, AuditEvent};
        use crate::privacy::audit::note;
        let actor = if kind.ends_with("_request") {
            Actor::Customer
        } else {
            Actor::System
        };
        let event = AuditEvent {
            at,
            kind: kind.to_owned(),
            contact: Some(contact.as_str().to_owned()),
            actor,
            detail: None,
            business: run.business.clone(),
            by: None,
        };
        note(self.store.as_ref(), &self.audit, event).await;
    }
}
