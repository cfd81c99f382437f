//! Operators' accounts: who they are (an email), their role and
//! businesses, their password's Argon2id hash and TOTP secret, whether
//! they are disabled, and a generation that ends every session when it
//! moves (disable, reset). Kept sealed in the store's records
//! ([`crate::store::DocStore`], kind `operators`), shared by every
//! instance; one-time enrolment links in kind `enrolments`.
//!
//! Sign-in is in [`signin`], API tokens in [`tokens`].

pub mod cli;
pub mod password;
pub mod signin;
pub mod tokens;
pub mod totp;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::crypto::keyring::Keyring;
use crate::domain::BusinessId;
use crate::domain::audit::{Actor, AuditEvent};
use crate::domain::operator::Role;
use crate::store::{Store, StoreError};

/// The records' kinds.
pub const ACCOUNTS: &str = "operators";
pub const ENROLMENTS: &str = "enrolments";

/// How long an enrolment link works.
pub const ENROLMENT_LIFE: u64 = 24 * 3600;

/// An operator's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The businesses they serve (every one for an owner).
    #[serde(default)]
    pub businesses: Vec<BusinessId>,
    /// Argon2id (PHC string); `None` until enrolled.
    #[serde(default)]
    pub password: Option<String>,
    /// The TOTP secret (base32); `None` until enrolled.
    #[serde(default)]
    pub totp: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Moves on disable and reset: sessions of an older one are over.
    #[serde(default)]
    pub generation: u64,
    pub created: u64,
    #[serde(default)]
    pub last_sign_in: Option<u64>,
}

impl Account {
    pub fn enrolled(&self) -> bool {
        self.password.is_some() && self.totp.is_some()
    }

    /// The caller this operator is (signed in, or by one of their tokens).
    pub fn caller(&self, who: crate::domain::operator::Who) -> crate::domain::operator::Caller {
        crate::domain::operator::Caller {
            who,
            role: self.role,
            businesses: (self.role != Role::Owner).then(|| self.businesses.clone()),
        }
    }
}

/// A one-time enrolment link's record, under the hash of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolment {
    pub operator: String,
    /// The account's generation it was made for (a later reset ends it).
    pub generation: u64,
    pub expires: u64,
    /// The TOTP secret offered (kept once enrolled).
    pub secret: String,
}

/// Why an operator command or enrolment was refused (said as is).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    Invalid(String),
    #[error("no operator has that email")]
    NoSuchOperator,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The accounts, over a store and the key ring that seals them.
pub struct Accounts<'a> {
    pub store: &'a dyn Store,
    pub keyring: &'a Keyring,
    pub audit: &'a crate::privacy::audit::Chain,
}

/// 32 random bytes, hex.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Compares digests, so neither content nor length leaks.
pub(crate) fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}

fn hash_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A normalised email, or why it is not one.
pub fn email(raw: &str) -> Result<String, OperatorError> {
    let e = raw.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.contains(char::is_whitespace)
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if ok {
        Ok(e)
    } else {
        Err(OperatorError::Invalid(format!(
            "\"{}\" is not an email address",
            raw.trim()
        )))
    }
}

impl Accounts<'_> {
    fn seal(&self, kind: &str, id: &str, value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
        crate::store::seal_record(self.keyring, (kind, id), value)
    }

    fn open<T: DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<T, StoreError> {
        crate::store::open_record(self.keyring, (kind, id), sealed)
    }

    /// Every account, by email.
    pub async fn all(&self) -> Result<Vec<Account>, StoreError> {
        let mut out = Vec::new();
        for (id, sealed) in self.store.docs(ACCOUNTS).await? {
            out.push(self.open::<Account>(ACCOUNTS, &id, &sealed)?);
        }
        out.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Account>, StoreError> {
        match self.store.doc(ACCOUNTS, id).await? {
            Some(sealed) => self.open(ACCOUNTS, id, &sealed).map(Some),
            None => Ok(None),
        }
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let email = email.trim().to_lowercase();
        Ok(self.all().await?.into_iter().find(|a| a.email == email))
    }

    pub async fn put(&self, account: &Account) -> Result<(), StoreError> {
        let sealed = self.seal(ACCOUNTS, &account.id, account)?;
        self.store.put_doc(ACCOUNTS, &account.id, sealed).await
    }

    /// Audits an operator event (`operator_added`, `operator_enrolled`,
    /// …) by `by` about operator `id`: never an email, password or code.
    pub async fn note(&self, kind: &str, id: &str, by: &str, detail: Option<String>) {
        let event = AuditEvent {
            at: crate::clock::now_secs(),
            kind: kind.to_owned(),
            contact: None,
            actor: Actor::Admin,
            detail: Some(detail.map_or_else(
                || format!("operator {id}"),
                |d| format!("operator {id}: {d}"),
            )),
            business: None,
            by: Some(by.to_owned()),
        };
        crate::privacy::audit::note(self.store, self.audit, event).await;
    }

    /// Adds an operator; answers the account and its enrolment token.
    pub async fn add(
        &self,
        raw_email: &str,
        role: Role,
        businesses: Vec<BusinessId>,
        by: &str,
    ) -> Result<(Account, String), OperatorError> {
        let email = email(raw_email)?;
        if self.by_email(&email).await?.is_some() {
            return Err(OperatorError::Invalid(format!(
                "an operator with the email {email} exists"
            )));
        }
        if role != Role::Owner && businesses.is_empty() {
            return Err(OperatorError::Invalid(format!(
                "a {} needs at least one --business",
                role.as_str()
            )));
        }
        let mut raw = [0u8; 8];
        rand::fill(&mut raw);
        let account = Account {
            id: format!("op_{}", hex::encode(raw)),
            email,
            role,
            businesses: if role == Role::Owner {
                Vec::new()
            } else {
                businesses
            },
            password: None,
            totp: None,
            disabled: false,
            generation: 1,
            created: crate::clock::now_secs(),
            last_sign_in: None,
        };
        self.put(&account).await?;
        let token = self.new_enrolment(&account).await?;
        self.note(
            "operator_added",
            &account.id,
            by,
            Some(format!("role {}", role.as_str())),
        )
        .await;
        Ok((account, token))
    }

    /// A new enrolment link for `account` (its token).
    async fn new_enrolment(&self, account: &Account) -> Result<String, StoreError> {
        let token = random_id();
        let id = hash_hex(&token);
        let record = Enrolment {
            operator: account.id.clone(),
            generation: account.generation,
            expires: crate::clock::now_secs() + ENROLMENT_LIFE,
            secret: totp::new_secret(),
        };
        let sealed = self.seal(ENROLMENTS, &id, &record)?;
        self.store.put_doc(ENROLMENTS, &id, sealed).await?;
        Ok(token)
    }

    /// Resets an operator: their password and authenticator are gone, their
    /// sessions and tokens end, and a new enrolment link is made.
    pub async fn reset(
        &self,
        raw_email: &str,
        by: &str,
    ) -> Result<(Account, String), OperatorError> {
        let mut account = self
            .by_email(raw_email)
            .await?
            .ok_or(OperatorError::NoSuchOperator)?;
        account.password = None;
        account.totp = None;
        account.disabled = false;
        account.generation += 1;
        self.put(&account).await?;
        tokens::revoke_all(self, &account.id).await?;
        let token = self.new_enrolment(&account).await?;
        self.note("operator_reset", &account.id, by, None).await;
        Ok((account, token))
    }

    /// Disables an operator: their sessions and tokens end at once.
    pub async fn disable(&self, raw_email: &str, by: &str) -> Result<Account, OperatorError> {
        let mut account = self
            .by_email(raw_email)
            .await?
            .ok_or(OperatorError::NoSuchOperator)?;
        account.disabled = true;
        account.generation += 1;
        self.put(&account).await?;
        tokens::revoke_all(self, &account.id).await?;
        self.note("operator_disabled", &account.id, by, None).await;
        Ok(account)
    }

    /// The live enrolment of a link's token, with its account.
    pub async fn enrolment(&self, token: &str) -> Result<Option<(Enrolment, Account)>, StoreError> {
        let id = hash_hex(token);
        let Some(sealed) = self.store.doc(ENROLMENTS, &id).await? else {
            return Ok(None);
        };
        let record: Enrolment = self.open(ENROLMENTS, &id, &sealed)?;
        if record.expires <= crate::clock::now_secs() {
            self.store.drop_doc(ENROLMENTS, &id).await?;
            return Ok(None);
        }
        let account = self.get(&record.operator).await?;
        Ok(account
            .filter(|a| a.generation == record.generation && !a.disabled)
            .map(|a| (record, a)))
    }

    /// Completes an enrolment: the password chosen and the first code
    /// from the authenticator. The link works once.
    pub async fn enrol(
        &self,
        token: &str,
        password: &str,
        code: &str,
    ) -> Result<Account, OperatorError> {
        let invalid = |m: &str| OperatorError::Invalid(m.to_owned());
        let (record, mut account) = self.enrolment(token).await?.ok_or_else(|| {
            invalid("This enrolment link has expired or was used. Ask an owner for a new one.")
        })?;
        if let Some(why) = password::weakness(password, &account.email) {
            return Err(invalid(why));
        }
        let now = crate::clock::now_secs();
        let step = totp::matching_step(&record.secret, code, now)
            .ok_or_else(|| invalid("That code is not the one your authenticator shows now."))?;
        let id = hash_hex(token);
        // One enrolment per link, even with two tabs racing.
        if !self.store.use_once(ENROLMENTS, &id, record.expires).await? {
            return Err(invalid(
                "This enrolment link has expired or was used. Ask an owner for a new one.",
            ));
        }
        self.store
            .use_once(
                signin::CODES,
                &format!("{}:{step}", account.id),
                now + 3 * totp::STEP,
            )
            .await?;
        account.password = Some(password::hash(password).map_err(|e| corrupt("password", e))?);
        account.totp = Some(record.secret);
        account.generation += 1;
        self.put(&account).await?;
        self.store.drop_doc(ENROLMENTS, &id).await?;
        self.note(
            "operator_enrolled",
            &account.id,
            &format!("operator:{}", account.id),
            None,
        )
        .await;
        Ok(account)
    }
}
