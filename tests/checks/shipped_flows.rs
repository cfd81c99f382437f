//! The flows this business ships (flows/) are valid, their transcripts
//! pass, and the `check` and `test` commands say so, or say what is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use whatsify::flow::transcript::run_dir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn whatsify(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_whatsify"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_shipped_flows_are_valid_and_every_transcript_passes() {
    let flows = whatsify::flow::load_dir(&root().join("flows")).unwrap_or_else(|e| {
        let lines: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        panic!("{}", lines.join("\n"))
    });
    for id in ["welcome", "promotions", "support", "privacy"] {
        assert!(flows.flow(id).is_some(), "flow {id} is shipped");
    }
    let reports = run_dir(
        &flows,
        &root().join("flows/tests"),
        Duration::from_secs(86_400),
    );
    assert!(reports.len() >= 14, "{} transcripts", reports.len());
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|f| format!("{}: {f}", r.file.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let uncovered = whatsify::flow::transcript::uncovered(&flows, &reports);
    assert!(
        uncovered.is_empty(),
        "steps no transcript reaches: {uncovered:?}"
    );
}

#[test]
fn check_prints_a_summary_for_good_flows_and_every_error_for_bad_ones() {
    let (code, out) = whatsify(&["check", "flows"], &root());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 flows") && out.contains("no errors"),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    for (i, name) in ["unknown_step.yaml", "too_many_buttons.yaml"]
        .iter()
        .enumerate()
    {
        let text =
            std::fs::read_to_string(root().join("tests/flows/broken").join(name)).expect("read");
        let text = text.replace("id: broken", &format!("id: broken{i}"));
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    std::fs::copy(
        root().join("tests/flows/base.yaml"),
        dir.path().join("base.yaml"),
    )
    .expect("copy");
    let (code, out) = whatsify(&["check", "."], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("./unknown_step.yaml:6:11: unknown step `nowhere`"),
        "{out}"
    );
    assert!(
        out.contains("./too_many_buttons.yaml:7:7: 4 buttons"),
        "{out}"
    );
    assert!(out.contains("2 error(s)"), "{out}");
}

#[test]
fn test_reports_a_failing_transcript_with_a_readable_diff_and_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    for f in std::fs::read_dir(root().join("flows")).expect("flows") {
        let p = f.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::copy(
        root().join("flows/tests/welcome_named.yaml"),
        dir.path().join("tests/welcome_named.yaml"),
    )
    .expect("copy");
    let wrong = std::fs::read_to_string(root().join("flows/tests/welcome_named.yaml"))
        .expect("read")
        .replace("Hi Ana 👋", "Hello Ana!");
    std::fs::write(
        dir.path().join("tests/wrong.yaml"),
        wrong.replace("name: a known", "name: a broken copy of a known"),
    )
    .expect("write");
    let (code, out) = whatsify(&["test", "."], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pass  a known customer"), "{out}");
    assert!(out.contains("FAIL  a broken copy"), "{out}");
    assert!(out.contains("turn 1 (send: Hello!)"), "{out}");
    assert!(out.contains("- expected: text: Hello Ana!"), "{out}");
    assert!(out.contains("+ got:      text: Hi Ana 👋"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

/// Runs `whatsify chat` with `input` typed in; answers what it printed.
fn chat(input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_whatsify"))
        .args([
            "chat",
            "--as",
            "16505550101",
            "--name",
            "Ana",
            "--flows",
            "flows",
        ])
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chat starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("chat ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// `whatsify chat` runs the real server on a temporary store: numbered
/// choices picked by number or text, `/wait` firing a timeout.
#[test]
fn chat_shows_numbered_choices_takes_numbers_and_text_and_moves_the_clock() {
    let text = chat(b"hi\n1\nno, thanks\n1\nmenu\n/wait 1h\n/session\n/nonsense\n/quit\n");
    for expected in [
        "Chatting with the flows as customer 16505550101 (Ana)",
        "bot> Hi Ana 👋",
        "     [1] See offers",
        "     [3] My privacy",
        "bot> This week: 20% off",
        "bot> No problem, we won't send you offers.",
        "     (1h later)",
        "bot> We're here whenever you need us. Just say hi.",
        "(no conversation under way)",
        "(unknown command; /help lists them)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // After the offers flow ended, "1" is a plain text again (no stale
    // choice): it starts the default flow rather than tapping "Yes, send
    // offers".
    assert!(!text.contains("You'll get our offers"), "{text}");
    assert_eq!(text.matches("bot> Hi Ana 👋").count(), 3, "{text}");
}

/// The privacy commands work in the chat as on WhatsApp, before any flow:
/// STOP and START with their confirmations, MY DATA sends the document,
/// DELETE MY DATA asks and erases, and the next message starts afresh.
#[test]
fn chat_runs_the_real_privacy_commands() {
    let text = chat(
        b"hi\n/session\nSTOP\nSTART\nmy data\ndelete my data\nYes, delete it\n/session\nhi\n/quit\n",
    );
    for expected in [
        "(at welcome/menu",
        "you won't get promotions from us anymore",
        "reply START",
        "bot> We're preparing a copy of your data.",
        "bot> (document: my-data.json) A copy of the data we keep about you.",
        "Delete everything?",
        "     [1] Yes, delete it",
        "we've deleted your data",
        "(no conversation under way)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let preparing = text.find("preparing a copy").unwrap_or(usize::MAX);
    let document = text.find("(document: my-data.json)").unwrap_or(0);
    assert!(
        preparing < document,
        "the note comes before the file:\n{text}"
    );
    let erased = text.find("we've deleted your data").unwrap_or(usize::MAX);
    assert!(
        text[erased..].contains("bot> Hi Ana 👋"),
        "a fresh start after the erasure:\n{text}"
    );
}

#[test]
fn numbers_typed_at_a_question_are_answers_not_taps_on_old_buttons() {
    use whatsify::domain::inbound::Input;
    use whatsify::domain::profile::ContactView;
    use whatsify::flow::transcript::Conversation;
    let flows = whatsify::flow::load_dir(&root().join("flows")).expect("flows");
    let mut conv = Conversation::new(&flows, ContactView::default(), Duration::from_secs(86_400));
    conv.input(&Input::Text("privacy".into()));
    let change = conv.tap("Change my name").expect("a list row");
    conv.input(&change);
    assert!(conv.tap("2").is_none(), "the list is no longer on screen");
}
