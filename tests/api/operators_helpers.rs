//! Operators for tests: an enrolled account of a role (its password and
//! TOTP secret known to the test) and an API token of it, made through
//! the same code the enrolment page and the token route use.

use whatsify::domain::BusinessId;
use whatsify::domain::operator::Role;
use whatsify::operators::{Account, Accounts, tokens, totp};

use crate::helpers::TestApp;

/// The password every test operator enrols with.
pub const PASSWORD: &str = "violet-harbour-lantern-42";

/// An enrolled operator.
pub struct TestOperator {
    pub account: Account,
    pub email: String,
    /// The TOTP secret (base32), to compute codes.
    pub secret: String,
    /// An API token acting as them.
    pub token: String,
}

pub fn accounts(app: &TestApp) -> Accounts<'_> {
    Accounts {
        store: app.state.store.as_ref(),
        keyring: &app.state.keyring,
        audit: &app.state.audit,
    }
}

/// The code the operator's authenticator shows now.
pub fn code_now(secret: &str) -> String {
    totp::code_at(secret, whatsify::clock::now_secs()).expect("code")
}

/// Adds and enrols `email` as `role` for `businesses`, with an API token.
pub async fn operator(app: &TestApp, email: &str, role: Role, businesses: &[&str]) -> TestOperator {
    let a = accounts(app);
    let list: Vec<BusinessId> = businesses
        .iter()
        .map(|b| BusinessId::parse(b).expect("business id"))
        .collect();
    let (_, link) = a
        .add(email, role, list, "cli")
        .await
        .expect("operator added");
    let (enrolment, _) = a.enrolment(&link).await.expect("store").expect("live link");
    let secret = enrolment.secret.clone();
    // A code of the previous step, so the test's own sign-in can use
    // the current one.
    let earlier = whatsify::clock::now_secs().saturating_sub(totp::STEP);
    let code = totp::code_at(&secret, earlier).expect("code");
    let account = a.enrol(&link, PASSWORD, &code).await.expect("enrolled");
    let (_, token) = tokens::create(&a, &account, "tests", 30)
        .await
        .expect("token");
    TestOperator {
        account,
        email: email.to_owned(),
        secret,
        token,
    }
}
