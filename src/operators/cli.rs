//! `whatsify operator add|list|disable|reset`: operators managed from the
//! command line, on the settings' store and keys (the first owner is made
//! this way). Each answers the text to print.

use super::{Accounts, OperatorError};
use crate::domain::BusinessId;
use crate::domain::operator::Role;

/// What the command line asks.
pub enum Command {
    Add {
        email: String,
        role: String,
        businesses: Vec<String>,
    },
    List,
    Disable(String),
    Reset(String),
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Runs `command` on the settings' store; answers what to print.
pub async fn run(settings: &crate::config::Settings, command: Command) -> Result<String, Failure> {
    let secrets = crate::privacy::keys::load(settings)?;
    let store = crate::store::open(&settings.store)
        .await
        .map_err(|e| -> Failure {
            match settings.store.backend {
            crate::config::Backend::Embedded => format!(
                "{e}\n(the embedded store can be opened by one process at a time: stop the server, \
                 or manage operators in the console's Account page or with POST /admin/operators)"
            )
            .into(),
            _ => e.into(),
        }
        })?;
    crate::privacy::keys::check_store(store.as_ref(), &secrets).await?;
    let crypto = crate::privacy::keys::Crypto::new(&secrets);
    let accounts = Accounts {
        store: store.as_ref(),
        keyring: &crypto.keyring,
        audit: &crypto.audit,
    };
    let link = |token: &str| {
        let base = settings
            .console
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/');
        format!("{base}/console/enrol/{token}")
    };
    let base_hint = if settings.console.public_url.is_none() {
        " (on this server's address; set console.public_url to print a whole link)"
    } else {
        ""
    };
    Ok(match command {
        Command::Add {
            email,
            role,
            businesses,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                format!("--role must be owner, admin, agent or auditor, not \"{role}\"")
            })?;
            let mut ids = Vec::new();
            for b in &businesses {
                let known = settings.businesses.iter().any(|x| x.id.as_str() == b)
                    || (settings.businesses.is_empty() && b == "default");
                let id = BusinessId::parse(b).filter(|_| known);
                ids.push(id.ok_or_else(|| format!("no business has the id \"{b}\""))?);
            }
            let (account, token) = accounts.add(&email, role, ids, "cli").await?;
            format!(
                "operator {} added ({}, {}). Send them this one-time enrolment link, valid 24 hours{base_hint}:\n{}",
                account.email,
                account.id,
                account.role.as_str(),
                link(&token)
            )
        }
        Command::List => {
            let mut out = String::new();
            for a in accounts.all().await? {
                let state = match (a.disabled, a.enrolled()) {
                    (true, _) => "disabled",
                    (false, true) => "enrolled",
                    (false, false) => "waiting for enrolment",
                };
                let businesses: Vec<&str> = a.businesses.iter().map(BusinessId::as_str).collect();
                let businesses = if a.role == Role::Owner {
                    "every business".to_owned()
                } else {
                    businesses.join(",")
                };
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    a.id,
                    a.email,
                    a.role.as_str(),
                    businesses,
                    state
                ));
            }
            if out.is_empty() {
                "no operators yet: add the first owner with `whatsify operator add --email E --role owner`".to_owned()
            } else {
                out.trim_end().to_owned()
            }
        }
        Command::Disable(email) => {
            let a = accounts
                .disable(&email, "cli")
                .await
                .map_err(named(&email))?;
            format!(
                "operator {} disabled: their sessions and API tokens ended",
                a.email
            )
        }
        Command::Reset(email) => {
            let (a, token) = accounts.reset(&email, "cli").await.map_err(named(&email))?;
            format!(
                "operator {} reset: password and authenticator cleared, sessions and API tokens ended. New enrolment link, valid 24 hours{base_hint}:\n{}",
                a.email,
                link(&token)
            )
        }
    })
}

fn named(email: &str) -> impl Fn(OperatorError) -> Failure + '_ {
    move |e| match e {
        OperatorError::NoSuchOperator => format!("no operator has the email {email}").into(),
        e => e.into(),
    }
}
