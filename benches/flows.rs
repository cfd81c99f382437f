//! Flow engine and validator speed: one engine step on a 50-step flow, and
//! loading + validating a folder of 100 flow files.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use whatsify::domain::inbound::Input;
use whatsify::domain::profile::{ContactView, Session};
use whatsify::flow::engine::step;
use whatsify::flow::validate::compile;

/// 25 pairs of (say, ask): each answer is checked, saved, said back and the
/// next question asked.
fn fifty_step_flow() -> String {
    let mut y = String::from("id: survey\ntriggers:\n  - default: true\nsteps:\n");
    for i in 0..25 {
        let _ = write!(
            y,
            "  - id: say{i}\n    say: \"Thanks {{{{contact.name}}}}, noted.\"\n  - id: ask{i}\n    ask: \"Question {i}: how was it?\"\n    save_as: a{i}\n    validate: {{ min_length: 2 }}\n"
        );
    }
    y
}

/// A flow file with ten steps and its own keyword.
fn small_flow(n: usize) -> String {
    let mut y = format!(
        "id: flow{n}\ntriggers:\n  - keywords: [word{n}, other{n}]\n{}steps:\n  - id: menu\n    say: \"Menu {n}\"\n    buttons:\n      - {{ id: a, title: \"First\", goto: one }}\n      - {{ id: b, title: \"Second\", goto: two }}\n",
        if n == 0 { "  - default: true\n" } else { "" }
    );
    for (id, next) in [("one", "ask"), ("two", "ask")] {
        let _ = write!(
            y,
            "  - id: {id}\n    say: \"Step {id}\"\n    next: {next}\n"
        );
    }
    y.push_str("  - id: ask\n    ask: \"Your email?\"\n    save_as: email\n    validate: { email: true }\n    next: thanks\n");
    y.push_str(
        "  - id: thanks\n    say: \"Thanks, we will write to {{vars.email}}\"\n    next: tag\n",
    );
    y.push_str(
        "  - id: tag\n    set: { add_tags: [asked] }\n    next: fin\n  - id: fin\n    end: true\n",
    );
    y
}

fn bench(c: &mut Criterion) {
    let flows = compile(&[(PathBuf::from("survey.yaml"), fifty_step_flow())]).expect("valid");
    let contact = ContactView {
        name: Some("Ana".into()),
        tags: Default::default(),
    };
    let session = Session {
        flow: "survey".into(),
        step: "ask12".into(),
        vars: (0..12)
            .map(|i| (format!("a{i}"), "fine".to_owned()))
            .collect(),
        retries: 0,
        deadline: None,
        last_active: 1_800_000_000,
    };
    let input = Input::Text("pretty good".into());
    c.bench_function("engine step, 50-step flow", |b| {
        b.iter(|| {
            step(
                black_box(&flows),
                Some(session.clone()),
                &contact,
                black_box(&input),
                1_800_000_010,
                86_400,
            )
        })
    });

    let dir = tempfile::tempdir().expect("temp dir");
    for n in 0..100 {
        std::fs::write(dir.path().join(format!("flow{n:03}.yaml")), small_flow(n)).expect("write");
    }
    whatsify::flow::load_dir(dir.path()).expect("the generated folder is valid");
    c.bench_function("load and validate 100 flow files", |b| {
        b.iter(|| whatsify::flow::load_dir(black_box(dir.path())).expect("valid"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
