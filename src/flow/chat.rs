//! `whatsify chat`: talk to the flows in a terminal, as a customer would on
//! WhatsApp. Buttons and list rows are numbered and can be picked by number
//! or by their text; `/wait 30m` moves the clock so timeouts fire.

use std::io::{BufRead, Write};
use std::time::Duration;

use super::Flows;
use super::engine::{ContactView, Effect, Input, Outgoing};
use super::transcript::Conversation;

const HELP: &str = "Type as the customer would. Pick a button or list row by its number or text.\n\
/wait 30m   let time pass (timeouts fire)\n\
/image      send something a flow cannot read (a photo)\n\
/session    show where the conversation stands\n\
/quit       leave (or Ctrl-D)";

/// Writes one bot effect the way a phone would show it.
pub fn render(effect: &Effect, out: &mut impl Write) -> std::io::Result<()> {
    match effect {
        Effect::Send { message } => match message {
            Outgoing::Text { body, .. } => writeln!(out, "bot> {body}"),
            Outgoing::Buttons {
                body,
                header,
                footer,
                buttons,
            } => {
                if let Some(h) = header {
                    writeln!(out, "bot> *{h}*")?;
                }
                writeln!(out, "bot> {body}")?;
                if let Some(f) = footer {
                    writeln!(out, "     _{f}_")?;
                }
                for (i, (_, title)) in buttons.iter().enumerate() {
                    writeln!(out, "     [{}] {title}", i + 1)?;
                }
                Ok(())
            }
            Outgoing::List {
                body,
                button,
                sections,
                ..
            } => {
                writeln!(out, "bot> {body}")?;
                writeln!(out, "     ≡ {button}")?;
                let mut n = 0;
                for s in sections {
                    if let Some(t) = &s.title {
                        writeln!(out, "     {t}")?;
                    }
                    for (_, title, description) in &s.rows {
                        n += 1;
                        match description {
                            Some(d) => writeln!(out, "     [{n}] {title} — {d}")?,
                            None => writeln!(out, "     [{n}] {title}")?,
                        }
                    }
                }
                Ok(())
            }
            Outgoing::Media {
                kind,
                link,
                caption,
                ..
            } => {
                writeln!(
                    out,
                    "bot> ({kind}: {link}) {}",
                    caption.as_deref().unwrap_or("")
                )
            }
            Outgoing::Template { name, params, .. } => {
                writeln!(out, "bot> (template {name} {params:?})")
            }
        },
        other => writeln!(out, "     ({})", super::transcript::describe(other)),
    }
}

/// Runs the chat on `input` / `output` until `/quit` or end of input.
pub fn run(
    flows: &Flows,
    wa_id: &str,
    name: Option<String>,
    session_ttl: Duration,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    let contact = ContactView {
        name,
        tags: Default::default(),
    };
    let who = match &contact.name {
        Some(n) => format!("{wa_id} ({n})"),
        None => wa_id.to_owned(),
    };
    let mut conv = Conversation::new(flows, contact, session_ttl);
    writeln!(
        output,
        "Chatting with the flows as customer {who}. /help for commands."
    )?;
    for line in input.lines() {
        let line = line?;
        let line = line.trim();
        let effects = if line.is_empty() {
            continue;
        } else if line == "/quit" || line == "/exit" {
            break;
        } else if line == "/help" {
            writeln!(output, "{HELP}")?;
            continue;
        } else if line == "/session" {
            match &conv.session {
                Some(s) => writeln!(output, "     (at {}/{}, vars {:?})", s.flow, s.step, s.vars)?,
                None => writeln!(output, "     (no conversation under way)")?,
            }
            continue;
        } else if line == "/image" {
            conv.input(&Input::Unreadable)
        } else if let Some(d) = line.strip_prefix("/wait") {
            match humantime::parse_duration(d.trim()) {
                Ok(d) => {
                    writeln!(output, "     ({} later)", humantime::format_duration(d))?;
                    conv.wait(d)
                }
                Err(_) => {
                    writeln!(output, "     (/wait takes a duration like 30s, 10m, 2h)")?;
                    continue;
                }
            }
        } else if line.starts_with('/') {
            writeln!(output, "     (unknown command; /help lists them)")?;
            continue;
        } else {
            match conv.tap(line) {
                Some(choice) => conv.input(&choice),
                None => conv.input(&Input::Text(line.to_owned())),
            }
        };
        for e in &effects {
            render(e, &mut output)?;
        }
        output.flush()?;
    }
    Ok(())
}
