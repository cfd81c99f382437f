//! References between steps and flows: resolving `goto` / `goto_flow`,
//! every transition out of a step, and loops that would never stop.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::compiler::Compiler;
use crate::flow::model::{FlowFile, Spanned};
use crate::flow::{Flow, FlowIdx, Kind, Step, Target};

/// A step anywhere: (flow, step).
type Node = (FlowIdx, usize);

/// What the steps of one flow may refer to.
pub(super) struct Resolver<'a> {
    pub(super) flow_id: &'a str,
    pub(super) steps: &'a HashMap<&'a str, usize>,
    pub(super) flows: &'a HashMap<String, FlowIdx>,
}

impl Compiler {
    pub(super) fn resolve_step(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &Spanned<String>,
    ) -> Target {
        match r.steps.get(s.value.as_str()) {
            Some(&i) => Target::Step(i),
            None => {
                let known = listed(r.steps.keys().copied());
                self.err(
                    path,
                    s,
                    format!(
                        "unknown step `{}` in flow `{}` (its steps: {})",
                        s.value, r.flow_id, known
                    ),
                );
                Target::End
            }
        }
    }

    pub(super) fn resolve_flow(
        &mut self,
        path: &Path,
        r: &Resolver<'_>,
        s: &Spanned<String>,
    ) -> Target {
        match r.flows.get(&s.value) {
            Some(&i) => Target::Flow(i),
            None => {
                let known = listed(r.flows.keys().map(String::as_str));
                self.err(
                    path,
                    s,
                    format!("unknown flow `{}` (flows: {})", s.value, known),
                );
                Target::End
            }
        }
    }

    /// Cycles of steps none of which waits would spin forever.
    pub(super) fn check_loops(&mut self, order: &[(&PathBuf, &FlowFile)]) {
        let node = |t: Target, flow: FlowIdx| match t {
            Target::Step(s) => Some((flow, s)),
            Target::Flow(f) => Some((f, 0)),
            Target::End => None,
        };
        // 0 = new, 1 = on the stack, 2 = done.
        let mut state: HashMap<(FlowIdx, usize), u8> = HashMap::new();
        let mut reported = BTreeSet::new();
        for f in 0..self.flows.len() {
            for s in 0..self.flows[f].steps.len() {
                let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
                if state.get(&(f, s)).copied().unwrap_or(0) != 0 {
                    continue;
                }
                let succ = |n: Node, flows: &Vec<Flow>| -> Vec<Node> {
                    let step = &flows[n.0].steps[n.1];
                    if step.waits() {
                        return Vec::new();
                    }
                    targets(step)
                        .into_iter()
                        .filter_map(|t| node(t, n.0))
                        .collect()
                };
                state.insert((f, s), 1);
                stack.push(((f, s), succ((f, s), &self.flows)));
                while let Some((n, rest)) = stack.last_mut() {
                    let n = *n;
                    match rest.pop() {
                        Some(m) => match state.get(&m).copied().unwrap_or(0) {
                            0 => {
                                state.insert(m, 1);
                                let next = succ(m, &self.flows);
                                stack.push((m, next));
                            }
                            1 => {
                                let start = stack.iter().position(|(x, _)| *x == m).unwrap_or(0);
                                let cycle: Vec<Node> =
                                    stack[start..].iter().map(|(x, _)| *x).collect();
                                if reported.insert(cycle.iter().copied().min()) {
                                    let names: Vec<String> = cycle
                                        .iter()
                                        .chain(std::iter::once(&m))
                                        .map(|(fl, st)| {
                                            format!(
                                                "{}/{}",
                                                self.flows[*fl].id, self.flows[*fl].steps[*st].id
                                            )
                                        })
                                        .collect();
                                    let (file, f0) = (order[m.0].0, order[m.0].1);
                                    let span = &f0.steps[m.1].id;
                                    let msg = format!(
                                        "a loop with no waiting step would never stop: {} (add a buttons, list or ask step to it)",
                                        names.join(" → ")
                                    );
                                    self.err(file, span, msg);
                                }
                            }
                            _ => {}
                        },
                        None => {
                            state.insert(n, 2);
                            stack.pop();
                        }
                    }
                }
            }
        }
    }
}

/// Every transition out of a step.
pub(super) fn targets(step: &Step) -> Vec<Target> {
    let mut out = vec![step.next];
    if let Some((_, t)) = step.timeout {
        out.push(t);
    }
    match &step.kind {
        Kind::Buttons { choices, .. } => out.extend(choices.iter().map(|c| c.target)),
        Kind::List { sections, .. } => out.extend(
            sections
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|c| c.target)),
        ),
        Kind::Ask { on_fail, .. } => out.push(*on_fail),
        Kind::Branch { cases, otherwise } => {
            out.extend(cases.iter().map(|c| c.2));
            out.push(*otherwise);
        }
        _ => {}
    }
    // Buttons and lists only go where their choices say.
    if matches!(step.kind, Kind::Buttons { .. } | Kind::List { .. }) {
        out.remove(0);
    }
    out
}

/// Ids sorted, each in backquotes, separated by commas.
fn listed<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    let quoted: Vec<String> = ids.iter().map(|k| format!("`{k}`")).collect();
    quoted.join(", ")
}
