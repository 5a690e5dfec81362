//! Parsing a config file's TOML text into a table, with an error that stays short: the TOML
//! parser's own message quotes the whole offending line, which for a minified or generated
//! file can be hundreds of kilobytes.

use anyhow::{Result, anyhow};
use toml::Table;

/// The most characters of the offending line an error quotes, centred on the column.
const SNIPPET_CHARS: usize = 80;

/// `text` as a TOML table, or "ORIGIN: invalid TOML at line L, column C: MESSAGE" with a short
/// excerpt of that line.
pub fn parse_table(text: &str, origin: &str) -> Result<Table> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let (line, column, excerpt) = locate(text, span.start);
                anyhow!(
                    "{origin}: invalid TOML at line {line}, column {column}: {message}\n  {excerpt}"
                )
            }
            None => anyhow!("{origin}: invalid TOML: {message}"),
        }
    })
}

/// The 1-based line and column (in characters) of byte `offset`, and at most
/// `SNIPPET_CHARS` characters of that line around it ("…" where cut).
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[..offset].matches('\n').count() + 1;
    let chars: Vec<char> = text[line_start..line_end]
        .trim_end_matches('\r')
        .chars()
        .collect();
    let column = text[line_start..offset].chars().count();
    let from = column.saturating_sub(SNIPPET_CHARS / 2);
    let to = (from + SNIPPET_CHARS).min(chars.len());
    let from = to.saturating_sub(SNIPPET_CHARS).min(from);
    let mut excerpt: String = chars[from..to].iter().collect();
    if from > 0 {
        excerpt.insert(0, '…');
    }
    if to < chars.len() {
        excerpt.push('…');
    }
    (line, column + 1, excerpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_error_names_line_and_column() {
        let e = parse_table("a = 1\nb = = 2\n", "x.toml").unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.starts_with("x.toml: invalid TOML at line 2, column 5"),
            "{text}"
        );
        assert!(text.contains("b = = 2"), "{text}");
    }

    #[test]
    fn a_huge_line_is_quoted_only_around_the_error() {
        let long = format!("a = \"{}\" b\n", "é".repeat(100_000));
        let e = parse_table(&long, "big.toml").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.len() < 600, "{} bytes: {}", text.len(), &text[..600]);
        assert!(text.contains("line 1, column 100008"), "{text}");
        assert!(text.contains('…') && text.contains("\" b"), "{text}");
        let deep = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!("{:#}", parse_table(&deep, "deep.toml").unwrap_err());
        assert!(text.len() < 600 && text.contains("line 1"), "{text}");
    }

    #[test]
    fn valid_text_parses() {
        let t = parse_table("[train]\nepochs = 3\n", "ok.toml").unwrap();
        assert_eq!(t["train"]["epochs"].as_integer(), Some(3));
    }
}
