//! Signing an operator in: email, password and the current TOTP code (a
//! code works once), with failures per account slowed down and then
//! refused for a while, shared by every instance (the per-address
//! throttle is the HTTP side's).

use serde::{Deserialize, Serialize};

use super::{Account, Accounts, password, totp};
use crate::store::StoreError;

/// The records' kinds: TOTP steps used (`<operator>:<step>`) and failure
/// counts per account.
pub const CODES: &str = "totp-used";
pub const FAILS: &str = "signin-fails";

/// Failures before each try must wait (1 s, then 2, 4, … up to a minute).
pub const SLOW_AFTER: u32 = 3;
/// Failures in a row that lock the account for [`LOCK_SECS`].
pub const LOCK_AFTER: u32 = 6;
pub const LOCK_SECS: u64 = 15 * 60;

/// An account's failures in a row (no personal data: kept in the clear).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Fails {
    count: u32,
    /// When the last failure was (Unix s).
    last: u64,
    /// Locked until (Unix s), 0 when not.
    until: u64,
}

impl Fails {
    /// How long a try must still wait, at `now`.
    fn wait(&self, now: u64) -> u64 {
        if self.until > now {
            return self.until - now;
        }
        if self.count < SLOW_AFTER {
            return 0;
        }
        let backoff = 1u64 << (self.count - SLOW_AFTER).min(6);
        (self.last + backoff.min(60)).saturating_sub(now)
    }
}

/// Why a sign-in was refused.
#[derive(Debug)]
pub enum Refusal {
    /// Wrong email, password or code (the same answer for each).
    Wrong,
    /// Too many failures: try again in so many seconds (`true`: the
    /// account is locked for a while).
    Wait(u64, bool),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal::Store(e)
    }
}

async fn fails(accounts: &Accounts<'_>, id: &str) -> Result<(Fails, Option<Vec<u8>>), StoreError> {
    let raw = accounts.store.doc(FAILS, id).await?;
    let f = raw
        .as_deref()
        .and_then(|r| serde_json::from_slice(r).ok())
        .unwrap_or_default();
    Ok((f, raw))
}

/// Counts a failure for `id` (atomically, whichever instance); answers
/// whether the account is now locked.
async fn failed(accounts: &Accounts<'_>, id: &str, now: u64) -> Result<bool, StoreError> {
    for _ in 0..8 {
        let (mut f, raw) = fails(accounts, id).await?;
        f.count += 1;
        f.last = now;
        let locks = f.count >= LOCK_AFTER;
        if locks {
            f.until = now + LOCK_SECS;
        }
        let json = serde_json::to_vec(&f).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if accounts
            .store
            .swap_doc(FAILS, id, raw.as_deref(), json)
            .await?
        {
            return Ok(locks);
        }
    }
    Ok(false)
}

/// Signs `email` in with `pass` and `code`; audits the sign-in, each
/// failure and a lock with the operator's id (never what was typed).
pub async fn sign_in(
    accounts: &Accounts<'_>,
    email: &str,
    pass: &str,
    code: &str,
) -> Result<Account, Refusal> {
    let now = crate::clock::now_secs();
    let Some(mut account) = accounts.by_email(email).await? else {
        password::verify_nothing(pass);
        return Err(Refusal::Wrong);
    };
    let id = account.id.clone();
    let (f, _) = fails(accounts, &id).await?;
    let wait = f.wait(now);
    if wait > 0 {
        return Err(Refusal::Wait(wait, f.until > now));
    }
    let secret = account.totp.clone().unwrap_or_default();
    let ok = !account.disabled
        && account
            .password
            .as_deref()
            .is_some_and(|h| password::verify(pass, h))
        && match totp::matching_step(&secret, code, now) {
            Some(step) => {
                let mark = format!("{id}:{step}");
                accounts
                    .store
                    .use_once(CODES, &mark, now + 3 * totp::STEP)
                    .await?
            }
            None => false,
        };
    let by = format!("operator:{id}");
    if !ok {
        let locked = failed(accounts, &id, now).await?;
        accounts
            .note("operator_sign_in_failed", &id, &by, None)
            .await;
        if locked {
            let detail = format!(
                "locked for {} minutes after {LOCK_AFTER} failures",
                LOCK_SECS / 60
            );
            accounts
                .note("operator_locked", &id, &by, Some(detail))
                .await;
        }
        return Err(Refusal::Wrong);
    }
    accounts.store.drop_doc(FAILS, &id).await?;
    account.last_sign_in = Some(now);
    accounts.put(&account).await?;
    accounts.note("operator_signed_in", &id, &by, None).await;
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_lock() {
        let mut f = Fails::default();
        assert_eq!(f.wait(100), 0);
        f.count = SLOW_AFTER;
        f.last = 100;
        assert_eq!(f.wait(100), 1);
        assert_eq!(f.wait(101), 0);
        f.count = SLOW_AFTER + 2;
        assert_eq!(f.wait(100), 4);
        f.until = 100 + LOCK_SECS;
        assert_eq!(f.wait(100), LOCK_SECS);
    }
}
