//! Store conformance, rules written in Lua and in Rust agree (each case on both backends
//! unless it names one).

use super::*;

/// The delivery-status merge and the campaign tally are written twice: in
/// Rust (`Delivery::merge`, `campaign_tally`, which the embedded store runs)
/// and in Lua (`merge.lua`, which the Redis store runs in its scripts). The
/// same generated status sequences go through both, and the record kept
/// and the campaign's counters must come out the same.
#[test]
fn the_lua_merge_and_tally_agree_with_the_rust_rules() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use whatsify::store::campaign_tally;

    let b = crate::helpers::redis();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s = rt.block_on(open(&b.backend));
    let states = prop::sample::select(DeliveryState::ALL.to_vec());
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    let strategy = prop::collection::vec((states, any::<bool>()), 1..8);
    runner
        .run(&strategy, |steps| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = ContactKey::parse(&format!("{:032x}", 0xabc_0000 + n)).expect("key");
            let campaign = format!("prop{n}");
            let job = format!("cmp.{campaign}.1");
            // The Rust rules.
            let mut kept: Option<Delivery> = None;
            let mut counted = std::collections::BTreeMap::<String, i64>::new();
            let updates: Vec<Delivery> = steps
                .iter()
                .enumerate()
                .map(|(i, (state, with_code))| Delivery {
                    code: with_code.then_some(131_000 + i as i64),
                    reason: (*state == DeliveryState::NoConsent && *with_code)
                        .then(|| "opted_out".to_owned()),
                    ..record(&job, *state, 100 + i as u64)
                })
                .collect();
            for u in &updates {
                let before = kept.clone();
                let changed = match kept.as_mut() {
                    None => {
                        kept = Some(u.clone());
                        true
                    }
                    Some(d) => d.merge(u),
                };
                if changed {
                    for (name, delta) in campaign_tally(before.as_ref(), u) {
                        *counted.entry(name).or_default() += delta;
                    }
                }
            }
            // The Lua rules, through the Redis store.
            let (records, counts) = rt.block_on(async {
                for u in &updates {
                    status(&s, &k, u.clone()).await;
                }
                (
                    s.deliveries(&k).await.expect("records"),
                    s.campaign_counts(&campaign).await.expect("counts"),
                )
            });
            prop_assert_eq!(records, kept.into_iter().collect::<Vec<_>>());
            counted.retain(|_, v| *v != 0);
            let counts: std::collections::BTreeMap<String, i64> =
                counts.into_iter().filter(|(_, v)| *v != 0).collect();
            prop_assert_eq!(counts, counted);
            Ok(())
        })
        .expect("the Lua and the Rust rules agree");
}
