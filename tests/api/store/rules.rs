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

/// What a generated opt-out case does, in order, to one contact.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// A new campaign sends the contact a message, accepted by Meta.
    Send,
    /// The customer's STOP, with its inbox entry.
    Stop,
    /// The customer's START, with its inbox entry.
    Start,
    /// A flow's opt-out step or the Stop button, in a commit.
    StopInCommit,
    /// The support team records an opt-out.
    StopByAdmin,
}

/// Plays `steps` on `s` for the contact `k`; returns every campaign's
/// `opt_outs` counter, in the order the campaigns were sent.
async fn play(s: &Arc<dyn Store>, k: &ContactKey, case: u32, steps: &[Act]) -> Vec<i64> {
    let mut campaigns = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let said = |granted: bool, body: &str| InboxEntry {
            consent: Some(marketing(granted, "keyword")),
            ..entry(&Queue::Contact(k.clone()), &format!("c{case}s{i}"), body)
        };
        match step {
            Act::Send => {
                let id = format!("o{case}s{i}");
                new_campaign(s, &id, 1).await;
                let send = campaign_job(k, &format!("j{i}"), "wk", true);
                let (done, _) = s
                    .campaign_dispatch(&id, "d", vec![send], 1, whatsify::clock::now_ms())
                    .await
                    .expect("dispatch");
                assert_eq!(done, vec![Dispatched::Done]);
                finish_first(s, k, campaign_accepted(&format!("cmp.{id}.1"))).await;
                campaigns.push(id);
            }
            Act::Stop => drop(s.append(vec![said(false, "STOP")]).await.expect("append")),
            Act::Start => drop(s.append(vec![said(true, "START")]).await.expect("append")),
            Act::StopByAdmin => s
                .append_consent(k, marketing(false, "admin"))
                .await
                .expect("consent"),
            Act::StopInCommit => {
                let hello = entry(&Queue::Contact(k.clone()), &format!("c{case}s{i}"), "hi");
                s.append(vec![hello]).await.expect("append");
                commit_consent(s, k, vec![marketing(false, "button")]).await;
            }
        }
    }
    let mut counted = Vec::new();
    for id in &campaigns {
        counted.push(counter(s, id, "opt_outs").await);
    }
    counted
}

/// Opt-out attribution is written twice: in Rust (`attribute_opt_out`,
/// which the embedded store runs) and in Lua (`append.lua`, `commit.lua`).
/// The same generated sequences of campaign messages, STOPs, STARTs and
/// opt-outs by other routes go through both stores, and every campaign's
/// `opt_outs` counter must come out the same (and never above 1).
#[test]
fn the_lua_and_the_rust_opt_out_attribution_agree() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let (r, e) = (crate::helpers::redis(), crate::helpers::embedded());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (redis, embedded) = rt.block_on(async { (open(&r.backend).await, open(&e.backend).await) });
    let step = prop_oneof![
        3 => Just(Act::Send),
        3 => Just(Act::Stop),
        2 => Just(Act::Start),
        1 => Just(Act::StopInCommit),
        1 => Just(Act::StopByAdmin),
    ];
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step, 1..10), |steps| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = ContactKey::parse(&format!("{:032x}", 0xdef_0000 + n)).expect("key");
            let (lua, rust) = rt.block_on(async {
                (
                    play(&redis, &k, n, &steps).await,
                    play(&embedded, &k, n, &steps).await,
                )
            });
            prop_assert_eq!(&lua, &rust);
            prop_assert!(lua.iter().all(|n| (0..=1).contains(n)), "{:?}", lua);
            Ok(())
        })
        .expect("the Lua and the Rust opt-out attribution agree");
}
