//! An erasure the customer confirmed while their data is under a legal
//! hold (see [`crate::privacy::hold`]): nothing is erased, the request is
//! recorded as waiting for the end of the hold, and the customer is told
//! so in plain words instead of hearing their data was deleted. The reply
//! goes through the outbox like any other. The sender checks again when
//! an erasure's turn comes, for a hold placed in between.

use super::turn::Turn;
use super::*;
use crate::domain::hold::{Asker, HELD_ERASURE_TEXT};

impl Worker {
    /// When the step confirmed an erasure and the contact is held: the
    /// erasure is noted as waiting, and its confirmation ("your data is
    /// deleted") becomes [`HELD_ERASURE_TEXT`].
    pub(super) async fn hold_erasure(&self, turn: &mut Turn) -> Result<(), StoreError> {
        let Some(at) = (turn.jobs.iter()).position(|j| matches!(j.message, OutMessage::Erase))
        else {
            return Ok(());
        };
        let business = crate::domain::BusinessId::of_tag(self.business_of(turn).as_ref());
        let ctx = crate::privacy::hold::Ctx {
            store: self.store.as_ref(),
            keyring: &self.keyring,
            audit: &self.audit,
        };
        let whose = (&business, &turn.contact);
        if !crate::privacy::hold::note_waiting(ctx, whose, Asker::Customer, turn.now).await? {
            return Ok(());
        }
        let erase = turn.jobs.remove(at);
        let held = super::effects::text(HELD_ERASURE_TEXT.to_owned());
        // The confirmation queued just before the erasure says it is done.
        match at.checked_sub(1).and_then(|i| turn.jobs.get_mut(i)) {
            Some(done) if is_text(&done.message) => done.message = held,
            _ => turn.jobs.insert(
                at,
                Job {
                    message: held,
                    ..erase
                },
            ),
        }
        // Erase jobs further on (asked twice in one step) wait as well.
        turn.jobs
            .retain(|j| !matches!(j.message, OutMessage::Erase));
        turn.causes.iter_mut().for_each(|c| c.erased = false);
        turn.held_erasure = true;
        Ok(())
    }
}

fn is_text(message: &OutMessage) -> bool {
    matches!(
        message,
        OutMessage::Flow {
            message: Outgoing::Text { .. }
        }
    )
}
