//! Operators' API tokens, for scripts: named, shown once
//! (`wsf_<id>_<secret>`), kept as a SHA-256 hash of the secret (sealed
//! with the rest of the record), expiring within a year, revocable, and
//! acting with their operator's role and businesses as they are now (a
//! disabled or reset operator's tokens stop at once).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Account, Accounts};
use crate::store::StoreError;

/// The records' kind.
pub const TOKENS: &str = "api-tokens";
/// How every token starts.
pub const PREFIX: &str = "wsf_";
/// The longest life a token may have.
pub const MAX_DAYS: u64 = 365;

/// A token's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub operator: String,
    pub name: String,
    /// SHA-256 of the secret part, hex.
    hash: String,
    pub created: u64,
    pub expires: u64,
}

impl Token {
    /// What the API shows of a token (never its hash).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "operator": self.operator,
            "created": self.created,
            "expires": self.expires,
        })
    }
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(
        format!("whatsify api token\0{secret}").as_bytes(),
    ))
}

/// Makes a token for `operator`, named `name`, for `days` (1 to 365);
/// answers its record and the token itself (shown once).
pub async fn create(
    accounts: &Accounts<'_>,
    operator: &Account,
    name: &str,
    days: u64,
) -> Result<(Token, String), super::OperatorError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(super::OperatorError::Invalid(
            "a token needs a name of 1 to 80 characters".into(),
        ));
    }
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(super::OperatorError::Invalid(format!(
            "a token lasts 1 to {MAX_DAYS} days"
        )));
    }
    let mut raw = [0u8; 6];
    rand::fill(&mut raw);
    let id = format!("tok_{}", hex::encode(raw));
    let secret = super::random_id();
    let now = crate::clock::now_secs();
    let token = Token {
        id: id.clone(),
        operator: operator.id.clone(),
        name: name.to_owned(),
        hash: digest(&secret),
        created: now,
        expires: now + days * 86_400,
    };
    let sealed = accounts.seal(TOKENS, &id, &token)?;
    accounts.store.put_doc(TOKENS, &id, sealed).await?;
    let by = format!("operator:{}", operator.id);
    accounts
        .note(
            "api_token_created",
            &operator.id,
            &by,
            Some(format!("token {id}")),
        )
        .await;
    Ok((token, format!("{PREFIX}{id}_{secret}")))
}

/// Every token (of every operator), by id.
pub async fn all(accounts: &Accounts<'_>) -> Result<Vec<Token>, StoreError> {
    let mut out = Vec::new();
    for (id, sealed) in accounts.store.docs(TOKENS).await? {
        out.push(accounts.open::<Token>(TOKENS, &id, &sealed)?);
    }
    Ok(out)
}

/// Revokes one token, audited as done by `by`.
pub async fn revoke(accounts: &Accounts<'_>, token: &Token, by: &str) -> Result<(), StoreError> {
    accounts.store.drop_doc(TOKENS, &token.id).await?;
    accounts
        .note(
            "api_token_revoked",
            &token.operator,
            by,
            Some(format!("token {}", token.id)),
        )
        .await;
    Ok(())
}

/// Revokes every token of `operator`.
pub async fn revoke_all(accounts: &Accounts<'_>, operator: &str) -> Result<(), StoreError> {
    for t in all(accounts).await? {
        if t.operator == operator {
            accounts.store.drop_doc(TOKENS, &t.id).await?;
        }
    }
    Ok(())
}

/// The token and its operator that `bearer` (`wsf_<id>_<secret>`) is,
/// when it is live: known, unexpired, its operator enabled.
pub async fn authenticate(
    accounts: &Accounts<'_>,
    bearer: &str,
) -> Result<Option<(Token, Account)>, StoreError> {
    let Some((id, secret)) = bearer
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.rsplit_once('_'))
    else {
        return Ok(None);
    };
    if id.len() > 40 || !id.starts_with("tok_") {
        return Ok(None);
    }
    let Some(sealed) = accounts.store.doc(TOKENS, id).await? else {
        return Ok(None);
    };
    let token: Token = accounts.open(TOKENS, id, &sealed)?;
    let now = crate::clock::now_secs();
    if !super::same(&token.hash, &digest(secret)) || token.expires <= now {
        return Ok(None);
    }
    let account = accounts.get(&token.operator).await?;
    Ok(account
        .filter(|a| !a.disabled && a.enrolled())
        .map(|a| (token, a)))
}
