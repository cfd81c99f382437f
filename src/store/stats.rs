//! The anonymous daily statistics whatsify keeps (`GET /admin/stats`),
//! which outlive every contact's data: per UTC day, messages in and out,
//! opt-outs and opt-ins, exports, erasures, and the flow steps run
//! (`step:<flow>/<step>`). They name no contact.
//!
//! Each business has its own: the `default` business's counters keep the
//! names earlier releases gave them (so a store written before businesses
//! existed reads on unchanged), another business's are named
//! `business:<id>:<name>` ([`scoped`]). Every counter name starts with
//! one of the fixed words above or `step:`, never `business:`, so the two
//! never meet.

pub const MESSAGES_IN: &str = "messages_in";
pub const MESSAGES_OUT: &str = "messages_out";
pub const OPT_OUTS: &str = "opt_outs";
pub const OPT_INS: &str = "opt_ins";
pub const EXPORTS: &str = "exports";
pub const ERASURES: &str = "erasures";
/// How long a day's counters are kept (Redis: the hash's TTL; the
/// embedded store drops older days in the retention pass).
pub const KEEP_DAYS: u64 = 400;

use crate::domain::BusinessId;

/// What starts the counters of a business other than `default`.
const BUSINESS_PREFIX: &str = "business:";

/// The name of the counter `name` of `business` (`None`: `default`).
pub fn scoped(business: Option<&BusinessId>, name: &str) -> String {
    match business.filter(|b| !b.is_default()) {
        None => name.to_owned(),
        Some(b) => format!("{BUSINESS_PREFIX}{b}:{name}"),
    }
}

/// The business a counter belongs to, and its name within that business.
pub fn unscoped(counter: &str) -> (BusinessId, &str) {
    counter
        .strip_prefix(BUSINESS_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(id, name)| Some((BusinessId::parse(id)?, name)))
        .unwrap_or_else(|| (BusinessId::default_business(), counter))
}

/// Whether a counter (of any business) counts opt-outs.
pub fn is_opt_out(counter: &str) -> bool {
    unscoped(counter).1 == OPT_OUTS
}

/// `business`'s counters of each day, by their names within it.
pub fn of_business(all: &super::DailyStats, business: &BusinessId) -> super::DailyStats {
    all.iter()
        .map(|(day, counters)| {
            let own = counters
                .iter()
                .filter_map(|(counter, n)| {
                    let (b, name) = unscoped(counter);
                    (b == *business).then(|| (name.to_owned(), *n))
                })
                .collect();
            (day.clone(), own)
        })
        .collect()
}

/// Every business's counters of each day, added up by name.
pub fn of_all(all: &super::DailyStats) -> super::DailyStats {
    all.iter()
        .map(|(day, counters)| {
            let mut sum: std::collections::BTreeMap<String, u64> = Default::default();
            for (counter, n) in counters {
                *sum.entry(unscoped(counter).1.to_owned()).or_default() += n;
            }
            (day.clone(), sum)
        })
        .collect()
}

/// The counter a consent ledger entry adds (in its business's
/// statistics), if any.
pub fn of_consent(c: &crate::domain::consent::ConsentChange) -> Option<String> {
    (c.purpose == crate::domain::consent::MARKETING).then(|| {
        let name = if c.granted { OPT_INS } else { OPT_OUTS };
        scoped(c.business.as_ref(), name)
    })
}

/// `counts` and the opt-ins and opt-outs of `consent`, merged by name.
pub fn with_consent<'a>(
    counts: &[(String, u64)],
    consent: impl Iterator<Item = &'a crate::domain::consent::ConsentChange>,
) -> Vec<(String, u64)> {
    let mut out: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (name, n) in counts {
        *out.entry(name.clone()).or_default() += n;
    }
    for name in consent.filter_map(of_consent) {
        *out.entry(name).or_default() += 1;
    }
    out.into_iter().collect()
}

/// The counter of a flow step.
pub fn step(flow: &str, step: &str) -> String {
    format!("step:{flow}/{step}")
}

/// The UTC day (YYYY-MM-DD) of a Unix time in seconds.
pub fn day(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The number of days since 1970-01-01 of a day written YYYY-MM-DD.
pub fn parse_day(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Howard Hinnant's days-from-civil algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    // 2026-02-30 and the like do not round-trip.
    (day(days * 86_400) == text).then_some(days)
}

/// Today (UTC).
pub fn today() -> String {
    day(crate::clock::now_secs())
}

#[cfg(test)]
mod tests {
    use crate::domain::BusinessId;

    #[test]
    fn the_default_business_keeps_the_old_names_and_others_read_only_their_own() {
        let cafe = BusinessId::parse("cafe").expect("id");
        let default = BusinessId::default_business();
        assert_eq!(super::scoped(None, "opt_outs"), "opt_outs");
        assert_eq!(super::scoped(Some(&default), "opt_outs"), "opt_outs");
        let named = super::scoped(Some(&cafe), "step:menu/hello");
        assert_eq!(named, "business:cafe:step:menu/hello");
        assert_eq!(super::unscoped(&named), (cafe.clone(), "step:menu/hello"));
        assert_eq!(
            super::unscoped("step:menu/hello"),
            (default.clone(), "step:menu/hello")
        );
        assert!(super::is_opt_out("business:cafe:opt_outs") && super::is_opt_out("opt_outs"));
        assert!(!super::is_opt_out("step:x/opt_outs"));
        let day: std::collections::BTreeMap<String, u64> = [
            ("messages_in".to_owned(), 2),
            ("business:cafe:messages_in".to_owned(), 5),
        ]
        .into();
        let all: crate::store::DailyStats = [("2026-01-01".to_owned(), day)].into();
        let of = |b: &BusinessId| super::of_business(&all, b)["2026-01-01"]["messages_in"];
        assert_eq!((of(&default), of(&cafe)), (2, 5));
        assert_eq!(super::of_all(&all)["2026-01-01"]["messages_in"], 7);
    }

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(super::day(0), "1970-01-01");
        assert_eq!(super::day(951_782_400), "2000-02-29");
        assert_eq!(super::day(1_795_996_800 - 1), "2026-11-29");
        assert_eq!(super::day(1_795_996_800), "2026-11-30");
        assert_eq!(super::parse_day("2026-11-30"), Some(1_795_996_800 / 86_400));
        assert_eq!(super::parse_day("1970-01-01"), Some(0));
        for bad in ["2026-02-30", "2026-13-01", "26-11-30", "2026-1-30", "x"] {
            assert_eq!(super::parse_day(bad), None, "{bad}");
        }
    }
}
