//! Which permission each admin and console route needs, in one table
//! ([`needed`]), and whether it is about one business (then the caller
//! must serve it). A route missing from the table needs the owner: a new
//! route is closed until someone says who may use it.

use actix_web::http::Method;

use crate::domain::operator::Perm;

/// What a route needs: the permission, and whether it is about one
/// business (its `{business}`, or the one business served).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub perm: Perm,
    pub scoped: bool,
}

const fn scoped(perm: Perm) -> Need {
    Need { perm, scoped: true }
}

const fn global(perm: Perm) -> Need {
    Need {
        perm,
        scoped: false,
    }
}

/// The need of the route `pattern` (as actix matched it, e.g.
/// `/admin/businesses/{business}/contacts/{id}`) for `method`.
pub fn needed(method: &Method, pattern: &str) -> Need {
    use Perm::*;
    let get = method == Method::GET || method == Method::HEAD;
    if pattern == "/console" {
        return global(Signed);
    }
    if let Some(rest) = pattern.strip_prefix("/console/") {
        return console(rest, get);
    }
    let tail = pattern
        .strip_prefix("/admin/businesses/{business}")
        .or_else(|| pattern.strip_prefix("/admin"))
        .unwrap_or(pattern);
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    match tail {
        "/businesses" if get => global(Signed),
        "" if delete => scoped(RemoveBusiness),
        "/removal" if get => scoped(RemoveBusiness),
        "/contacts/{id}" | "/contacts/{id}/conversation" if get => scoped(ContactView),
        "/contacts/{id}" if delete => scoped(ContactErase),
        "/contacts/{id}/export" if get => scoped(ContactExport),
        "/contacts/{id}/consent" if post => scoped(Consent),
        "/contacts/{id}/messages" if get => scoped(Deliveries),
        "/contacts/{id}/messages" | "/contacts/{id}/handoff/close" if post => scoped(Reply),
        "/contacts/{id}/hold" | "/contacts/{id}/disclosures" if get || post => scoped(Hold),
        "/contacts/{id}/hold" if delete => scoped(Hold),
        "/inbox" | "/inbox/events" if get => scoped(Inbox),
        "/inbox/{id}/take" if post => scoped(Reply),
        "/campaigns" | "/campaigns/{id}" => scoped(Campaigns),
        "/audit" if get => scoped(Audit),
        "/stats" if get => scoped(Stats),
        "/outbox/dead-letters" if get => scoped(DeadLetters),
        "/desk" if post => scoped(Desk),
        "/desk" | "/desk/{id}" if get => scoped(DeskView),
        "/desk/{id}/export" | "/desk/{id}/rectify" | "/desk/{id}/erase" if post => scoped(Desk),
        "/desk/{id}/object" | "/desk/{id}/restrict" | "/desk/{id}/close" if post => scoped(Desk),
        "/tokens" | "/tokens/{id}" => global(Signed),
        "/operators" | "/operators/{id}/disable" | "/operators/{id}/reset" => global(Operators),
        _ => global(Operators),
    }
}

/// The console's own API and pages.
fn console(rest: &str, get: bool) -> Need {
    use Perm::*;
    match rest {
        "api/overview" if get => scoped(Signed),
        "api/requests" if get => scoped(DeskView),
        "api/flows" if get => scoped(Flows),
        "api/simulator" => scoped(Flows),
        "flows/{id}/diagram.svg" if get => scoped(Flows),
        // The pages (what they show is the API's, checked again there).
        "contacts" => global(ContactView),
        "inbox" => global(Inbox),
        "requests" => global(DeskView),
        "campaigns" => global(Campaigns),
        "audit" => global(Audit),
        "flows" => global(Flows),
        "account" => global(Signed),
        _ => global(Operators),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_names_its_permission_and_unknown_routes_need_the_owner() {
        let n = needed(
            &Method::GET,
            "/admin/businesses/{business}/contacts/{id}/export",
        );
        assert_eq!(n, scoped(Perm::ContactExport));
        assert_eq!(
            needed(&Method::GET, "/admin/contacts/{id}/export"),
            scoped(Perm::ContactExport)
        );
        assert_eq!(
            needed(&Method::DELETE, "/admin/businesses/{business}"),
            scoped(Perm::RemoveBusiness)
        );
        assert_eq!(
            needed(&Method::DELETE, "/admin/contacts/{id}/hold"),
            scoped(Perm::Hold)
        );
        assert_eq!(
            needed(&Method::GET, "/admin/something-new"),
            global(Perm::Operators)
        );
        assert_eq!(
            needed(&Method::GET, "/admin/businesses"),
            global(Perm::Signed)
        );
        // The privacy desk: an admin acts, an auditor lists.
        let desk = "/admin/businesses/{business}/desk/{id}/erase";
        assert_eq!(needed(&Method::POST, desk), scoped(Perm::Desk));
        assert_eq!(needed(&Method::GET, "/admin/desk"), scoped(Perm::DeskView));
    }
}
