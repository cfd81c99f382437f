//! Message text with placeholders: `{{contact.name}}` and `{{vars.NAME}}`.
//! A value that is not set renders as empty, never as raw braces.

use std::collections::BTreeMap;

/// A parsed text.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    ContactName,
    Var(String),
}

/// What a placeholder may read.
pub trait Values {
    fn contact_name(&self) -> Option<&str>;
    fn var(&self, name: &str) -> Option<&str>;
}

impl Text {
    /// Parses `s`; an unknown or malformed placeholder is an error naming it.
    pub fn parse(s: &str) -> Result<Text, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a `{{` is not closed by `}}`".to_owned())?;
            let name = after[..close].trim();
            parts.push(match name {
                "contact.name" => Part::ContactName,
                _ => match name.strip_prefix("vars.") {
                    Some(v) if valid_name(v) => Part::Var(v.to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder `{{{{{name}}}}}`: expected `{{{{contact.name}}}}` or `{{{{vars.NAME}}}}`"
                        ));
                    }
                },
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Text { parts })
    }

    /// A text with no placeholders.
    pub fn plain(s: &str) -> Text {
        Text {
            parts: vec![Part::Lit(s.to_owned())],
        }
    }

    /// The variables this text reads.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn render(&self, values: &impl Values) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::ContactName => out.push_str(values.contact_name().unwrap_or("")),
                Part::Var(v) => out.push_str(values.var(v).unwrap_or("")),
            }
        }
        out
    }

    /// Length in characters of the literal parts (a lower bound).
    pub fn literal_chars(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.chars().count(),
                _ => 0,
            })
            .sum()
    }
}

/// The text as written, placeholders included (for diagrams).
impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => f.write_str(s)?,
                Part::ContactName => f.write_str("{{contact.name}}")?,
                Part::Var(v) => write!(f, "{{{{vars.{v}}}}}")?,
            }
        }
        Ok(())
    }
}

/// Variable names: letters, digits and `_`, starting with a letter.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Values for BTreeMap<String, String> {
    fn contact_name(&self) -> Option<&str> {
        self.get("contact.name").map(String::as_str)
    }
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_missing_ones_render_empty() {
        let t = Text::parse("Hi {{contact.name}}, order {{ vars.order }}{{vars.none}}!")
            .expect("parses");
        let mut v = BTreeMap::new();
        v.insert("contact.name".to_owned(), "Ana".to_owned());
        v.insert("order".to_owned(), "42".to_owned());
        assert_eq!(t.render(&v), "Hi Ana, order 42!");
        assert_eq!(t.render(&BTreeMap::new()), "Hi , order !");
        assert_eq!(t.vars().collect::<Vec<_>>(), ["order", "none"]);
        assert_eq!(
            t.to_string(),
            "Hi {{contact.name}}, order {{vars.order}}{{vars.none}}!"
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors() {
        assert!(
            Text::parse("{{name}}")
                .expect_err("unknown")
                .contains("{{name}}")
        );
        assert!(Text::parse("{{vars.1x}}").is_err());
        assert!(Text::parse("oops {{vars.a").is_err());
    }
}
