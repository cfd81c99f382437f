//! The validator against a folder of broken flow files, one per error
//! kind. Each file's first line says what must be reported and where:
//! `# expect: LINE:COL: message` (or `-:` for a folder-level error).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use whatsify::flow::validate::compile;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_broken_file_reports_its_error_at_its_position() {
    let base = (dir().join("base.yaml"), read(&dir().join("base.yaml")));
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir().join("broken"))
        .expect("broken flows")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let text = read(&path);
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: …`", path.display()))
            .to_owned();
        let alone = expect.starts_with("-:");
        // The base flow comes first, so the broken file is the second claimer.
        let mut sources = if alone {
            Vec::new()
        } else {
            vec![base.clone()]
        };
        sources.push((path.clone(), text));
        let Err(errors) = compile(&sources) else {
            wrong.push(format!("{}: compiled, but must not", path.display()));
            continue;
        };
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        if errors.len() != 1 {
            wrong.push(format!(
                "{}: expected one error, got {shown:#?}",
                path.display()
            ));
            continue;
        }
        let (pos, message) = expect.split_once(": ").unwrap_or(("", &expect));
        let got = &shown[0];
        let ok = if alone {
            got.contains(message)
        } else {
            got.starts_with(&format!("{}:{pos}: ", path.display())) && got.contains(message)
        };
        if !ok {
            wrong.push(format!(
                "{}: expected {expect:?}\n    got {got}",
                path.display()
            ));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 25, "only {checked} broken files");
}

#[test]
fn all_errors_are_reported_not_only_the_first() {
    let text = read(&dir().join("broken/unknown_step.yaml"))
        + "  - id: b\n    say: \"{{vars.nope}}\"\n    next: elsewhere\n";
    let errors = compile(&[(PathBuf::from("many.yaml"), text)]).expect_err("broken");
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(shown.len() >= 3, "{shown:#?}");
    assert!(shown.iter().any(|e| e.contains("nowhere")));
    assert!(shown.iter().any(|e| e.contains("elsewhere")));
    assert!(shown.iter().any(|e| e.contains("vars.nope")));
}

#[test]
fn the_base_flow_alone_is_valid() {
    let base = dir().join("base.yaml");
    let flows = compile(&[(base.clone(), read(&base))]).expect("valid");
    assert_eq!(flows.flows.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Garbage in, errors out: the validator never panics.
    #[test]
    fn the_validator_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = compile(&[(PathBuf::from("garbage.yaml"), text)]);
    }

    /// Near-valid files (a real file with one character changed) too.
    #[test]
    fn the_validator_never_panics_on_mutated_flows(at in any::<prop::sample::Index>(), c in any::<char>(), which in 0usize..25) {
        let mut files: Vec<_> = std::fs::read_dir(dir().join("broken")).expect("dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        let mut chars: Vec<char> = read(&files[which % files.len()]).chars().collect();
        let i = at.index(chars.len());
        chars[i] = c;
        let text: String = chars.into_iter().collect();
        let _ = compile(&[(PathBuf::from("mutated.yaml"), text)]);
    }
}
