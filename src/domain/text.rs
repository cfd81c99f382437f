//! Text rules shared by every stage: how a customer's message is folded
//! before it is compared with keywords, titles and choices.

/// Normalises a message for keyword matching: lower case, accents removed,
/// inner whitespace collapsed, surrounding whitespace and punctuation cut.
pub fn normalize(input: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = input
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let trimmed = folded.trim_matches(|c: char| {
        c.is_whitespace() || c.is_ascii_punctuation() || matches!(c, '¡' | '¿' | '…' | '«' | '»')
    });
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn keywords_match_whatever_the_case_accents_spaces_and_punctuation() {
        assert_eq!(normalize("  Héllo!! "), "hello");
        assert_eq!(normalize("MENÚ"), "menu");
        assert_eq!(normalize("¿Ayuda?"), "ayuda");
        assert_eq!(normalize("stop   all."), "stop all");
        assert_eq!(normalize("opt-out"), "opt-out");
    }
}
