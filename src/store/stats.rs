//! The anonymous daily statistics whatsify keeps (`GET /admin/stats`),
//! which outlive every contact's data: per UTC day, messages in and out,
//! opt-outs and opt-ins, exports, erasures, and the flow steps run
//! (`step:<flow>/<step>`). They name no contact.

pub const MESSAGES_IN: &str = "messages_in";
pub const MESSAGES_OUT: &str = "messages_out";
pub const OPT_OUTS: &str = "opt_outs";
pub const OPT_INS: &str = "opt_ins";
pub const EXPORTS: &str = "exports";
pub const ERASURES: &str = "erasures";
/// How long a day's counters are kept (Redis: the hash's TTL; the
/// embedded store drops older days in the retention pass).
pub const KEEP_DAYS: u64 = 400;

/// The counter a consent ledger entry adds, if any.
pub fn of_consent(c: &crate::domain::consent::ConsentChange) -> Option<&'static str> {
    (c.purpose == crate::domain::consent::MARKETING).then_some(if c.granted {
        OPT_INS
    } else {
        OPT_OUTS
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
        *out.entry(name.to_owned()).or_default() += 1;
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
