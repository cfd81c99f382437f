//! The flow diagram the console shows: an SVG drawn by the server from the
//! flows in force. One box per step, in file order (the order a business
//! reads its flow in), the first one marked as the start; an arrow per
//! transition, labelled with what takes it (a button, a list row, a
//! branch case, a wrong answer, a timeout). Transitions to the next box
//! go straight down; the others are routed in lanes to the right, each
//! lane shared only by arrows whose spans do not overlap. Ends and jumps
//! to other flows are grey pills after the steps.
//!
//! Everything written into the SVG is XML-escaped: step texts are the
//! business's own words, and the page shows the SVG as an image.

use std::fmt::Write as _;

use crate::flow::{Action, Check, FlowIdx, Flows, Kind, Step, Subject, Target, Test};

/// Box width.
const W: u32 = 300;
/// Vertical room between boxes (an arrow and its label).
const GAP: u32 = 34;
/// Left and top margins.
const X0: u32 = 20;
const Y0: u32 = 36;
/// The middle of the boxes, where straight arrows go down.
const CX: u32 = X0 + W / 2;
/// Room right of the boxes for the labels of routed arrows.
const LABEL_ROOM: u32 = 170;
/// Where routed arrows arrive, below a box's top.
const ARRIVE: u32 = 8;
/// Distance between lanes.
const LANE: u32 = 12;
/// Longest text in a box, and on an arrow (characters).
const BOX_TEXT: usize = 40;
const EDGE_TEXT: usize = 26;

struct Node {
    title: String,
    detail: String,
    class: Class,
    y: u32,
    h: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Step,
    /// Waits for the customer (buttons, list, ask).
    Waits,
    Action,
    Terminal,
}

struct Edge {
    from: usize,
    to: usize,
    label: String,
}

/// Where everything goes: boxes placed top to bottom, and for each arrow
/// whether it goes straight down or, if not, where it starts and its lane.
struct Layout {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    straight: Vec<bool>,
    starts: Vec<u32>,
    lane: Vec<usize>,
    width: u32,
    height: u32,
}

/// The SVG of flow `idx` (`None`: no such flow).
pub fn svg(flows: &Flows, idx: FlowIdx) -> Option<String> {
    let flow = flows.flows.get(idx)?;
    let (mut nodes, edges) = graph(flows, &flow.steps);
    let height = place(&mut nodes, &edges);
    let straight = straight_arrows(&edges);
    let starts = departures(&nodes, &edges, &straight);
    let (lane, lanes) = lanes(&nodes, &edges, &straight, &starts);
    let layout = Layout {
        width: X0 + W + LABEL_ROOM + lanes as u32 * LANE + 20,
        height,
        nodes,
        edges,
        straight,
        starts,
        lane,
    };
    Some(draw(&xml(&flow.id), &layout))
}

/// One node per step, then one per terminal (the end first, then other
/// flows in order of first use); one edge per transition.
fn graph(flows: &Flows, steps: &[Step]) -> (Vec<Node>, Vec<Edge>) {
    let mut nodes: Vec<Node> = steps
        .iter()
        .map(|s| Node {
            title: s.id.clone(),
            detail: short(&detail(s), BOX_TEXT),
            class: if s.waits() {
                Class::Waits
            } else if matches!(s.kind, Kind::Action { .. }) {
                Class::Action
            } else {
                Class::Step
            },
            y: 0,
            h: 0,
        })
        .collect();
    // Terminals, in order of first use.
    let mut terminals: Vec<Target> = Vec::new();
    let mut edges = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        for (target, label) in transitions(step) {
            let to = match target {
                Target::Step(s) => s,
                t => {
                    let k = match terminals.iter().position(|x| *x == t) {
                        Some(k) => k,
                        None => {
                            terminals.push(t);
                            terminals.len() - 1
                        }
                    };
                    steps.len() + k
                }
            };
            edges.push(Edge {
                from: i,
                to,
                label: short(&label, EDGE_TEXT),
            });
        }
    }
    // The end first: a flow's last step usually leads there, straight down.
    let order: Vec<usize> = (0..terminals.len())
        .filter(|&k| terminals[k] == Target::End)
        .chain((0..terminals.len()).filter(|&k| terminals[k] != Target::End))
        .collect();
    for e in &mut edges {
        if let Some(k) = e.to.checked_sub(steps.len()) {
            e.to = steps.len() + order.iter().position(|&o| o == k).unwrap_or(k);
        }
    }
    for &k in &order {
        let title = match terminals[k] {
            Target::Flow(f) => format!(
                "→ flow {}",
                flows.flows.get(f).map_or("?", |f| f.id.as_str())
            ),
            _ => "end".to_owned(),
        };
        nodes.push(Node {
            title,
            detail: String::new(),
            class: Class::Terminal,
            y: 0,
            h: 0,
        });
    }
    (nodes, edges)
}

/// Heights (room for every arrow leaving a box on its right) and places;
/// returns the height of the picture.
fn place(nodes: &mut [Node], edges: &[Edge]) -> u32 {
    let mut y = Y0;
    for (i, n) in nodes.iter_mut().enumerate() {
        let out = edges.iter().filter(|e| e.from == i).count() as u32;
        n.h = if n.class == Class::Terminal {
            30
        } else {
            44.max(ARRIVE + 20 + 14 * out)
        };
        n.y = y;
        y += n.h + GAP;
    }
    y - GAP + 20
}

/// Straight arrows: the first transition from a box to the one under it.
fn straight_arrows(edges: &[Edge]) -> Vec<bool> {
    let mut straight = vec![false; edges.len()];
    for (k, e) in edges.iter().enumerate() {
        if e.to == e.from + 1
            && !edges[..k]
                .iter()
                .zip(&straight)
                .any(|(p, s)| *s && p.from == e.from)
        {
            straight[k] = true;
        }
    }
    straight
}

/// Where each routed arrow leaves its box. Arrows arrive near a box's top
/// (ARRIVE); those leaving it start below, evenly spaced, each with room
/// for its label above it.
fn departures(nodes: &[Node], edges: &[Edge], straight: &[bool]) -> Vec<u32> {
    let mut starts = vec![0u32; edges.len()];
    for (i, n) in nodes.iter().enumerate() {
        let routed: Vec<usize> = (0..edges.len())
            .filter(|&k| edges[k].from == i && !straight[k])
            .collect();
        let m = routed.len() as u32;
        for (j, &k) in routed.iter().enumerate() {
            starts[k] = if m == 1 {
                n.y + (n.h + ARRIVE) / 2 + 4
            } else {
                n.y + ARRIVE + 16 + j as u32 * (n.h - ARRIVE - 20) / (m - 1)
            };
        }
    }
    starts
}

/// Each routed arrow's lane, a lane shared only by arrows whose spans do
/// not overlap; and how many lanes there are.
fn lanes(nodes: &[Node], edges: &[Edge], straight: &[bool], starts: &[u32]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..edges.len()).filter(|&k| !straight[k]).collect();
    let span = |k: usize| {
        let end = nodes[edges[k].to].y + ARRIVE;
        (starts[k].min(end), starts[k].max(end))
    };
    order.sort_by_key(|&k| span(k));
    let mut lane_ends: Vec<u32> = Vec::new();
    let mut lane = vec![0usize; edges.len()];
    for &k in &order {
        let (lo, hi) = span(k);
        let l = match lane_ends.iter().position(|&end| end + 6 < lo) {
            Some(l) => l,
            None => {
                lane_ends.push(0);
                lane_ends.len() - 1
            }
        };
        lane_ends[l] = hi;
        lane[k] = l;
    }
    (lane, lane_ends.len())
}

/// The picture of flow `name` (already escaped).
fn draw(name: &str, l: &Layout) -> String {
    let (width, height) = (l.width, l.height);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="Flow {name}" font-family="system-ui, sans-serif" font-size="13"><title>Flow {name}</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#57606a"/></marker></defs><rect width="{width}" height="{height}" fill="#fff"/>"##
    );
    let _ = write!(
        out,
        r##"<text x="{CX}" y="14" text-anchor="middle" fill="#57606a">start</text><path d="M{CX},18V{Y0}" stroke="#57606a" marker-end="url(#arrow)"/>"##
    );
    for k in 0..l.edges.len() {
        draw_edge(&mut out, l, k);
    }
    for n in &l.nodes {
        draw_node(&mut out, n);
    }
    out.push_str("</svg>");
    out
}

/// Arrow `k`, straight down or routed in its lane, with its label.
fn draw_edge(out: &mut String, l: &Layout, k: usize) {
    let e = &l.edges[k];
    let to = &l.nodes[e.to];
    let label = xml(&e.label);
    if l.straight[k] {
        let from = &l.nodes[e.from];
        let (y1, y2) = (from.y + from.h, to.y);
        let _ = write!(
            out,
            r##"<path d="M{CX},{y1}V{y2}" stroke="#57606a" fill="none" marker-end="url(#arrow)"/>"##
        );
        if !label.is_empty() {
            let ly = y1 + GAP / 2 + 4;
            let _ = write!(
                out,
                r##"<text x="{}" y="{ly}" font-size="11" fill="#1b1f23">{label}</text>"##,
                CX + 6
            );
        }
    } else {
        let x = X0 + W + LABEL_ROOM + l.lane[k] as u32 * LANE;
        let (y1, y2) = (l.starts[k], to.y + ARRIVE);
        let right = X0 + W;
        let _ = write!(
            out,
            r##"<path d="M{right},{y1}H{x}V{y2}H{right}" stroke="#57606a" fill="none" marker-end="url(#arrow)"/>"##
        );
        if !label.is_empty() {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" font-size="11" fill="#1b1f23" stroke="#fff" stroke-width="3" paint-order="stroke">{label}</text>"##,
                right + 6,
                y1 - 3
            );
        }
    }
}

/// A box: its frame by class, its title, and what the step does.
fn draw_node(out: &mut String, n: &Node) {
    let (fill, stroke, rx) = match n.class {
        Class::Step => ("#ffffff", "#8c959f", 6),
        Class::Waits => ("#e6f4ea", "#0b7a55", 6),
        Class::Action => ("#fff4d6", "#b7791f", 6),
        Class::Terminal => ("#eaeef2", "#8c959f", 15),
    };
    let _ = write!(
        out,
        r##"<rect x="{X0}" y="{}" width="{W}" height="{}" rx="{rx}" fill="{fill}" stroke="{stroke}"/>"##,
        n.y, n.h
    );
    let title = xml(&n.title);
    if n.detail.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{CX}" y="{}" text-anchor="middle" font-weight="600">{title}</text>"##,
            n.y + n.h / 2 + 5
        );
    } else {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-weight="600">{title}</text><text x="{}" y="{}" fill="#57606a">{}</text>"##,
            X0 + 10,
            n.y + 18,
            X0 + 10,
            n.y + 36,
            xml(&n.detail)
        );
    }
}

/// The same flow as text, for screen readers and for copying: each step
/// with what it does and where it goes (and what takes it there).
pub fn outline(flows: &Flows, idx: FlowIdx) -> Option<serde_json::Value> {
    let flow = flows.flows.get(idx)?;
    let name = |t: Target| match t {
        Target::Step(s) => flow.steps.get(s).map_or("?".to_owned(), |s| s.id.clone()),
        Target::Flow(f) => format!("flow {}", flows.flows.get(f).map_or("?", |f| f.id.as_str())),
        Target::End => "end".to_owned(),
    };
    Some(serde_json::Value::Array(
        flow.steps
            .iter()
            .map(|s| {
                let goes: Vec<serde_json::Value> = transitions(s)
                    .into_iter()
                    .map(|(t, when)| serde_json::json!({"when": when, "to": name(t)}))
                    .collect();
                serde_json::json!({"step": s.id, "does": detail(s), "goes": goes})
            })
            .collect(),
    ))
}

/// Where a step may go, with what takes it there.
fn transitions(step: &Step) -> Vec<(Target, String)> {
    let mut out: Vec<(Target, String)> = match &step.kind {
        Kind::Buttons { choices, .. } => choices
            .iter()
            .map(|c| (c.target, c.title.clone()))
            .collect(),
        Kind::List { sections, .. } => sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|c| (c.target, c.title.clone())))
            .collect(),
        Kind::Ask { check, on_fail, .. } => {
            let mut v = vec![(step.next, "answer".to_owned())];
            if check.is_some() {
                v.push((*on_fail, "still wrong".to_owned()));
            }
            v
        }
        Kind::Branch { cases, otherwise } => cases
            .iter()
            .map(|(subject, test, target)| (*target, case(subject, test)))
            .chain(std::iter::once((*otherwise, "else".to_owned())))
            .collect(),
        _ => vec![(step.next, String::new())],
    };
    if let Some((after, target)) = step.timeout {
        out.push((
            target,
            format!("no answer in {}", humantime::format_duration(after)),
        ));
    }
    out
}

fn case(subject: &Subject, test: &Test) -> String {
    let what = match subject {
        Subject::Var(v) => format!("vars.{v}"),
        Subject::ContactName => "contact.name".to_owned(),
        Subject::Tag => "tag".to_owned(),
    };
    match test {
        Test::Equals(x) => format!("{what} = {x}"),
        Test::NotEquals(x) => format!("{what} ≠ {x}"),
        Test::IsSet(true) => format!("{what} is set"),
        Test::IsSet(false) => format!("{what} is not set"),
        Test::Has(x) => format!("{what} {x}"),
    }
}

/// The box's second line: what the step does.
fn detail(step: &Step) -> String {
    match &step.kind {
        Kind::Say { text, .. } => format!("say: {text}"),
        Kind::Buttons { text, .. } => format!("buttons: {text}"),
        Kind::List { text, .. } => format!("list: {text}"),
        Kind::Media { kind, .. } => match kind {
            crate::flow::MediaKind::Image => "image".to_owned(),
            crate::flow::MediaKind::Document => "document".to_owned(),
        },
        Kind::Template { name, .. } => format!("template: {name}"),
        Kind::Ask {
            text,
            save_as,
            check,
            ..
        } => {
            let into = save_as
                .as_ref()
                .map(|v| format!(" → vars.{v}"))
                .unwrap_or_default();
            let checked = match check {
                Some(Check::Regex(_)) => " (pattern)",
                Some(Check::Choice(_)) => " (choice)",
                Some(Check::Number { .. }) => " (number)",
                Some(Check::Email) => " (email)",
                Some(Check::MinLength(_)) => " (length)",
                None => "",
            };
            format!("ask{into}{checked}: {text}")
        }
        Kind::Branch { .. } => "branch".to_owned(),
        Kind::Set { .. } => "set".to_owned(),
        Kind::Jump => match step.next {
            Target::End => "end".to_owned(),
            _ => "go to".to_owned(),
        },
        Kind::Action { action, purpose } => {
            let name = match action {
                Action::Handoff => "handoff",
                Action::OptIn => "opt in",
                Action::OptOut => "opt out",
                Action::Export => "export",
                Action::Erase => "erase",
                Action::UpdateName => "update name",
            };
            match purpose {
                Some(p) => format!("action: {name} ({p})"),
                None => format!("action: {name}"),
            }
        }
    }
}

/// At most `max` characters, with an ellipsis when cut; one line.
fn short(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        return one;
    }
    let mut cut: String = one.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML: the image would not draw.
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn flows(sources: &[(&str, &str)]) -> Flows {
        let sources: Vec<(PathBuf, String)> = sources
            .iter()
            .map(|(p, s)| (PathBuf::from(p), (*s).to_owned()))
            .collect();
        crate::flow::validate::compile(&sources).expect("valid flows")
    }

    const MENU: &str = r#"
id: menu
triggers:
  - default: true
steps:
  - id: hello
    say: "Hi <there> & welcome"
    buttons:
      - { id: b_hours, title: Opening hours, goto: hours }
      - { id: b_help, title: Help, goto_flow: help }
  - id: hours
    say: "9 to 5"
    next: bye
  - id: bye
    end: true
"#;
    const HELP: &str = r#"
id: help
triggers:
  - keywords: [question]
steps:
  - id: ask
    ask: "What is it?"
    save_as: what
    validate: { min_length: 3 }
    on_fail: ask
    next: done
    timeout: { after: 30m, goto: done }
  - id: done
    say: "Thanks"
"#;

    #[test]
    fn every_step_and_choice_is_drawn_and_text_is_escaped() {
        let f = flows(&[("menu.yaml", MENU), ("help.yaml", HELP)]);
        let menu = f.by_id["menu"];
        let svg = super::svg(&f, menu).expect("the flow");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        for text in [
            "hello",
            "hours",
            "bye",
            "Opening hours",
            "Help",
            "→ flow help",
            "end",
        ] {
            assert!(svg.contains(&format!(">{text}<")), "{text} missing: {svg}");
        }
        assert!(svg.contains("Hi &lt;there&gt; &amp; welcome"), "{svg}");
        assert!(!svg.contains("<there>"));
        // Three steps, two terminals (the other flow, the end), and the
        // background.
        assert_eq!(svg.matches("<rect").count(), 3 + 2 + 1);
        // Four arrows (two buttons, hours → bye, bye → end) and the start.
        assert_eq!(svg.matches("marker-end").count(), 4 + 1);
        // Only "Help" is routed around: hello → hours, hours → bye and
        // bye → end (the end is the first terminal) go straight down.
        assert_eq!(svg.matches(&format!("<path d=\"M{},", X0 + W)).count(), 1);
    }

    #[test]
    fn asks_show_the_wrong_answer_and_timeout_paths() {
        let f = flows(&[("menu.yaml", MENU), ("help.yaml", HELP)]);
        let drawn = svg(&f, f.by_id["help"]).expect("the flow");
        for text in [
            "answer",
            "still wrong",
            "no answer in 30m",
            "ask → vars.what (length): What is it?",
        ] {
            assert!(
                drawn.contains(&format!(">{text}<")),
                "{text} missing: {drawn}"
            );
        }
        assert!(svg(&f, f.flows.len()).is_none(), "no such flow");
        let text = outline(&f, f.by_id["help"]).expect("the flow");
        assert_eq!(
            text[0],
            serde_json::json!({
                "step": "ask",
                "does": "ask → vars.what (length): What is it?",
                "goes": [
                    {"when": "answer", "to": "done"},
                    {"when": "still wrong", "to": "ask"},
                    {"when": "no answer in 30m", "to": "done"},
                ],
            })
        );
        let menu = outline(&f, f.by_id["menu"]).expect("the flow");
        assert_eq!(
            menu[0]["goes"][1],
            serde_json::json!({"when": "Help", "to": "flow help"})
        );
    }

    #[test]
    fn long_texts_are_cut_on_one_line() {
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(short("abcdefghij", 5), "abcd…");
    }
}
