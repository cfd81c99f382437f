//! Slows down guessing of the admin credential: console sign-ins and
//! bearer tokens that fail are counted per client address and overall,
//! and once either count is spent the answer is 429 with `Retry-After`,
//! before the credential is even looked at (a right guess then teaches
//! nothing either).
//!
//! Each count is a token bucket: an address may fail
//! [`PER_ADDRESS_BURST`] times, then once per [`PER_ADDRESS_REFILL`]; all
//! addresses together [`OVERALL_BURST`] times, then once per
//! [`OVERALL_REFILL`]. An address that signed in or presented the right
//! token within the last hour is exempt from the overall count (not from
//! its own), so operators keep working while someone else is guessing.
//! The counts are kept per instance, in memory, for at most
//! [`ADDRESSES_MAX`] addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have before it must wait.
pub const PER_ADDRESS_BURST: f64 = 5.0;
/// Then one more failure per this long.
pub const PER_ADDRESS_REFILL: Duration = Duration::from_secs(60);
/// Failures all addresses together may have before they must wait.
pub const OVERALL_BURST: f64 = 30.0;
/// Then one more per this long.
pub const OVERALL_REFILL: Duration = Duration::from_secs(5);
/// How long a success exempts an address from the overall count.
const TRUSTED_FOR: Duration = Duration::from_secs(3600);
/// Most addresses remembered (the oldest are forgotten first).
pub const ADDRESSES_MAX: usize = 10_000;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, every: Duration, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(burst);
        self.at = now;
    }

    /// How long until one failure more is allowed (zero: now).
    fn wait(&self, every: Duration) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            every.mul_f64(1.0 - self.tokens)
        }
    }
}

#[derive(Default)]
struct Counts {
    addresses: HashMap<IpAddr, Bucket>,
    overall: Option<Bucket>,
    trusted: HashMap<IpAddr, Instant>,
}

/// What became of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the address may still try.
    Counted,
    /// Counted, and it spent the address's allowance: from now on it waits.
    Spent,
}

/// The failure counts of one instance.
#[derive(Default)]
pub struct Throttle(Mutex<Counts>);

impl Throttle {
    /// `Err(wait)` when `addr` must wait this long before its credential
    /// is looked at.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        self.check_at(addr, Instant::now())
    }

    /// Counts a failed sign-in or bearer token from `addr`.
    pub fn failed(&self, addr: IpAddr) -> Failure {
        self.failed_at(addr, Instant::now())
    }

    /// `addr` presented the right credential.
    pub fn succeeded(&self, addr: IpAddr) {
        let now = Instant::now();
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.trusted.len() >= ADDRESSES_MAX {
            c.trusted
                .retain(|_, at| now.duration_since(*at) < TRUSTED_FOR);
        }
        if c.trusted.len() < ADDRESSES_MAX {
            c.trusted.insert(addr, now);
        }
    }

    fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let own = c.addresses.get_mut(&addr).map_or(Duration::ZERO, |b| {
            b.refill(PER_ADDRESS_BURST, PER_ADDRESS_REFILL, now);
            b.wait(PER_ADDRESS_REFILL)
        });
        let trusted = c
            .trusted
            .get(&addr)
            .is_some_and(|at| now.duration_since(*at) < TRUSTED_FOR);
        let overall = match (&mut c.overall, trusted) {
            (Some(b), false) => {
                b.refill(OVERALL_BURST, OVERALL_REFILL, now);
                b.wait(OVERALL_REFILL)
            }
            _ => Duration::ZERO,
        };
        let wait = own.max(overall);
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    fn failed_at(&self, addr: IpAddr, now: Instant) -> Failure {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.addresses.len() >= ADDRESSES_MAX && !c.addresses.contains_key(&addr) {
            // Forget the addresses that have waited their allowance back,
            // else the one that failed longest ago.
            c.addresses.retain(|_, b| {
                let mut b = *b;
                b.refill(PER_ADDRESS_BURST, PER_ADDRESS_REFILL, now);
                b.tokens < PER_ADDRESS_BURST
            });
            if c.addresses.len() >= ADDRESSES_MAX
                && let Some(oldest) = c
                    .addresses
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(a, _)| *a)
            {
                c.addresses.remove(&oldest);
            }
        }
        let overall = c
            .overall
            .get_or_insert_with(|| Bucket::full(OVERALL_BURST, now));
        overall.refill(OVERALL_BURST, OVERALL_REFILL, now);
        overall.tokens = (overall.tokens - 1.0).max(0.0);
        let own = c
            .addresses
            .entry(addr)
            .or_insert_with(|| Bucket::full(PER_ADDRESS_BURST, now));
        own.refill(PER_ADDRESS_BURST, PER_ADDRESS_REFILL, now);
        own.tokens = (own.tokens - 1.0).max(0.0);
        if own.tokens < 1.0 {
            Failure::Spent
        } else {
            Failure::Counted
        }
    }
}

/// The address a request came from, as this server sees it (behind a
/// proxy: the proxy's; `X-Forwarded-For` is not trusted, anyone can write
/// it).
pub fn client(req: &actix_web::HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

/// The answer while `wait` runs.
pub fn too_many(wait: Duration) -> actix_web::HttpResponse {
    actix_web::HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", retry_after(wait)))
        .json(serde_json::json!({
            "error": "too many failed sign-ins or tokens from here; try again later"
        }))
}

/// Counts a refused credential (`how`: `bearer` or `sign-in`) from the
/// request's address and audits it: when, how, and a keyed hash of the
/// address; never what was tried.
pub async fn refused(req: &actix_web::HttpRequest, state: &crate::startup::AppState, how: &str) {
    let addr = client(req);
    let spent = state.throttle.failed(addr) == Failure::Spent;
    let tag = state
        .pseudonymizer
        .tag("admin-client-address", &addr.to_string());
    let short = tag.get(..16).unwrap_or(&tag);
    tracing::warn!(how, client = short, spent, "admin credential refused");
    let detail = if spent {
        format!("{how} refused, client {short}; it now waits before trying again")
    } else {
        format!("{how} refused, client {short}")
    };
    let event = crate::domain::audit::Event {
        at: crate::clock::now_secs(),
        kind: "admin_auth_failed".to_owned(),
        contact: None,
        actor: crate::domain::audit::Actor::Admin,
        detail: Some(detail),
    };
    crate::privacy::audit::note(state.store.as_ref(), &state.audit, event).await;
}

/// The `Retry-After` value of a wait: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_waits_after_its_allowance_and_gets_it_back_with_time() {
        let t = Throttle::default();
        let start = Instant::now();
        for n in 1..=5 {
            assert_eq!(t.check_at(ip(1), start), Ok(()), "failure {n}");
            let f = t.failed_at(ip(1), start);
            assert_eq!(f == Failure::Spent, n == 5);
        }
        let wait = t.check_at(ip(1), start).expect_err("spent");
        assert_eq!(wait, PER_ADDRESS_REFILL);
        assert_eq!(t.check_at(ip(2), start), Ok(()), "another address goes on");
        assert_eq!(t.check_at(ip(1), start + PER_ADDRESS_REFILL), Ok(()));
    }

    #[test]
    fn many_addresses_together_are_slowed_but_a_trusted_one_is_not() {
        let t = Throttle::default();
        let now = Instant::now();
        t.succeeded(ip(200));
        for n in 0..30u8 {
            t.failed_at(ip(n % 10 + 1), now);
        }
        assert!(t.check_at(ip(50), now).is_err(), "a fresh address waits");
        assert_eq!(t.check_at(ip(200), now), Ok(()), "an operator goes on");
        assert_eq!(t.check_at(ip(50), now + OVERALL_REFILL), Ok(()));
    }

    #[test]
    fn the_addresses_remembered_are_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for n in 0..(ADDRESSES_MAX as u32 + 50) {
            t.failed_at(IpAddr::from(n.to_be_bytes()), now);
        }
        let c = t.0.lock().expect("lock");
        assert!(c.addresses.len() <= ADDRESSES_MAX);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(4100)), "5");
    }
}
