//! flows/schema.json, the JSON Schema editors use for flow files: it is a
//! valid draft 2020-12 schema, accepts every shipped flow and every example
//! in docs/flows.md, documents every property, and rejects clearly wrong
//! flows at the right place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use whatsify::flow::transcript::{Transcript, run};
use whatsify::flow::validate::{compile, flow_files};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    serde_json::from_str(&read(&root().join("flows/schema.json")))
        .expect("flows/schema.json is JSON")
}

fn validator() -> jsonschema::Validator {
    let schema = schema();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("flows/schema.json is not a valid JSON Schema: {e}");
    }
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("flows/schema.json does not compile: {e}"))
}

/// A YAML document as the JSON value the schema sees.
fn yaml(what: &str, text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The schema's complaints about `doc`, as `instance path: message`.
fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_shipped_flow_is_valid_against_the_schema() {
    let v = validator();
    let paths = flow_files(&root().join("flows")).expect("flows/ is readable");
    assert!(paths.len() >= 4, "only {} flow files", paths.len());
    let mut wrong = Vec::new();
    for path in &paths {
        let doc = yaml(&path.display().to_string(), &read(path));
        for e in errors(&v, &doc) {
            wrong.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A small valid flow; each case below breaks one thing in it.
fn good() -> Value {
    yaml(
        "the base flow",
        r#"
id: demo
triggers:
  - keywords: [hi]
  - default: true
steps:
  - id: menu
    say: "Hi! Pick one."
    buttons:
      - { id: a, title: "First", goto: done }
      - { id: b, title: "Second", goto: done }
  - id: done
    end: true
"#,
    )
}

#[test]
fn clearly_wrong_flows_are_rejected_where_they_are_wrong() {
    let v = validator();
    let base = errors(&v, &good());
    assert!(base.is_empty(), "the base flow: {}", base.join("\n"));

    let button = |id: &str, title: &str| json!({ "id": id, "title": title, "goto": "done" });
    // (what, the broken flow, where the schema must complain, a word of its message)
    let mut cases: Vec<(&str, Value, &str, &str)> = Vec::new();

    let mut doc = good();
    doc["steps"][1]["sey"] = json!("typo");
    cases.push(("an unknown key on a step", doc, "/steps/1", "sey"));

    let mut doc = good();
    doc["steps"][0]["buttons"] = json!([
        button("a", "One"),
        button("b", "Two"),
        button("c", "Three"),
        button("d", "Four"),
    ]);
    cases.push(("four buttons", doc, "/steps/0/buttons", "more than 3 items"));

    let mut doc = good();
    doc["steps"][0]["buttons"][0]["title"] = json!("Twenty-one characters");
    cases.push((
        "a button title of 21 characters",
        doc,
        "/steps/0/buttons/0/title",
        "longer than 20 characters",
    ));

    let mut doc = good();
    doc["steps"][1] = json!({ "id": "done", "action": "call_mom" });
    cases.push(("an unknown action", doc, "/steps/1/action", "call_mom"));

    let mut doc = good();
    doc["steps"][1] = json!({ "id": "done", "say": "hi", "ask": "and?" });
    cases.push(("two kinds in one step", doc, "/steps/1", "oneOf"));

    let mut doc = good();
    doc["steps"][1] = json!({ "id": "done", "action": "opt_in" });
    cases.push(("opt_in without a purpose", doc, "/steps/1", "purpose"));

    let mut doc = good();
    doc["steps"][1] = json!({
        "id": "done",
        "template": { "name": "x", "language": "en", "category": "promo" }
    });
    cases.push((
        "an unknown template category",
        doc,
        "/steps/1/template/category",
        "promo",
    ));

    let mut wrong = Vec::new();
    for (what, doc, at, word) in &cases {
        let got = errors(&v, doc);
        let prefix = format!("{at}: ");
        if !got
            .iter()
            .any(|e| e.starts_with(&prefix) && e.contains(word))
        {
            wrong.push(format!(
                "{what}: expected an error at {at} mentioning {word:?}, got {got:#?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_property_has_a_description() {
    /// `narrowing`: inside `if`/`then`/`else`/`not`, where `properties`
    /// only add a constraint to a property documented elsewhere.
    fn walk(at: &str, node: &Value, narrowing: bool, missing: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    let here = format!("{at}/{key}");
                    if key == "properties" {
                        let Value::Object(props) = child else {
                            continue;
                        };
                        for (name, prop) in props {
                            if !narrowing && prop.get("description").is_none() {
                                missing.push(format!("{here}/{name}"));
                            }
                            walk(&format!("{here}/{name}"), prop, narrowing, missing);
                        }
                    } else {
                        let narrows = matches!(key.as_str(), "if" | "then" | "else" | "not");
                        walk(&here, child, narrowing || narrows, missing);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{at}/{i}"), item, narrowing, missing);
                }
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk("#", &schema(), false, &mut missing);
    assert!(
        missing.is_empty(),
        "properties without a description:\n{}",
        missing.join("\n")
    );
}

/// The ```yaml blocks of docs/flows.md, named by their `# path` first line.
fn doc_blocks() -> Vec<(String, String)> {
    let text = read(&root().join("docs/flows.md"));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line == "```yaml" => current = Some(String::new()),
            None => {}
            Some(block) if line == "```" => {
                let n = blocks.len() + 1;
                let name = block
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# "))
                    .map_or_else(|| format!("yaml block {n}"), str::to_owned);
                blocks.push((format!("docs/flows.md ({name})"), std::mem::take(block)));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn the_examples_in_docs_flows_md_are_valid_and_their_transcripts_pass() {
    let v = validator();
    let mut wrong = Vec::new();
    let mut sources = Vec::new();
    let mut transcripts = Vec::new();
    for (name, block) in doc_blocks() {
        let doc = yaml(&name, &block);
        if doc.get("steps").is_some() {
            for e in errors(&v, &doc) {
                wrong.push(format!("{name}: the schema says {e}"));
            }
            sources.push((PathBuf::from(name), block));
        } else if doc.get("turns").is_some() {
            transcripts.push((name, block));
        } else {
            wrong.push(format!(
                "{name}: neither a flow file nor a transcript (use ```text for fragments)"
            ));
        }
    }
    assert!(sources.len() >= 10, "only {} flow examples", sources.len());
    assert!(!transcripts.is_empty(), "no transcript example");
    // Together, the examples are one valid flows folder.
    let flows = match compile(&sources) {
        Ok(flows) => flows,
        Err(errors) => {
            wrong.extend(errors.iter().map(|e| e.to_string()));
            panic!("{}", wrong.join("\n"));
        }
    };
    for (name, block) in &transcripts {
        let t: Transcript = serde_saphyr::from_str(block).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = run(&flows, Path::new(name), &t, Duration::from_secs(86_400));
        if let Some(why) = report.failure {
            wrong.push(format!("{name}: {why}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
