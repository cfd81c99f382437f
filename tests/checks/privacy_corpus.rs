//! The opt-out detector against a corpus written for it: at least 100
//! ways customers ask to stop promotions, and at least 200 ordinary
//! messages (many with the same words in another sense). Prints recall and
//! the false-positive rate, and what it got wrong.

use whatsify::privacy::keywords::{Command, Extra, classify};

fn lines(name: &str) -> Vec<String> {
    let path = format!("{}/tests/privacy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The corpus the rules were written against.
#[test]
fn opt_outs_are_recognised_and_ordinary_messages_are_not() {
    measure("opt_out.txt", "ordinary.txt", 100, 200);
}

/// A second corpus, written by someone who never saw the rules or the
/// first corpus. Measured untouched first (2026-11-29): recall 97.9 %,
/// false positives 2.4 % (4 of 169). The rules were then corrected for
/// those six errors (a noun "end", "unsubscribe link", "don't want to
/// miss", a far object, "if you stopped", "be removed"), so it is no longer
/// held out; a new one would be needed for the next honest figure.
#[test]
fn held_out_opt_outs_are_recognised_and_ordinary_messages_are_not() {
    measure("holdout_opt_out.txt", "holdout_ordinary.txt", 60, 120);
}

fn measure(opt_out_file: &str, ordinary_file: &str, min_opt_outs: usize, min_ordinary: usize) {
    let extra = Extra::default();
    let opt_outs = lines(opt_out_file);
    let ordinary = lines(ordinary_file);
    assert!(
        opt_outs.len() >= min_opt_outs,
        "{} opt-out phrasings",
        opt_outs.len()
    );
    assert!(
        ordinary.len() >= min_ordinary,
        "{} ordinary messages",
        ordinary.len()
    );

    let missed: Vec<&String> = opt_outs
        .iter()
        .filter(|m| classify(m, &extra) != Some(Command::OptOut))
        .collect();
    let false_alarms: Vec<&String> = ordinary
        .iter()
        .filter(|m| classify(m, &extra) == Some(Command::OptOut))
        .collect();
    let recall = 1.0 - missed.len() as f64 / opt_outs.len() as f64;
    let fp = false_alarms.len() as f64 / ordinary.len() as f64;
    println!(
        "{opt_out_file} / {ordinary_file}: opt-out recall {:.1} % ({} of {}), false positives {:.1} % ({} of {})",
        recall * 100.0,
        opt_outs.len() - missed.len(),
        opt_outs.len(),
        fp * 100.0,
        false_alarms.len(),
        ordinary.len()
    );
    for m in &missed {
        println!("  missed: {m}");
    }
    for m in &false_alarms {
        println!("  taken for an opt-out: {m}");
    }
    assert!(recall >= 0.95, "recall {:.1} % < 95 %", recall * 100.0);
    assert!(fp <= 0.02, "false positives {:.1} % > 2 %", fp * 100.0);
}
