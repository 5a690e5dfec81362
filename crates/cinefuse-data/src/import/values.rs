//! Conversion of foreign values (strings, numbers, lists) into dataset fields: lenient about
//! shape (a list or a comma-separated string), strict about numbers.

use serde_json::Value;

/// Strings that mean "no value" in the sources we import.
pub fn is_missing_text(s: &str) -> bool {
    matches!(
        s.trim(),
        "" | "N/A" | "NA" | "n/a" | "\\N" | "null" | "None" | "-"
    )
}

pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !is_missing_text(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => a.iter().find_map(as_text),
        Value::Object(o) => o.get("name").and_then(as_text),
        _ => None,
    }
}

/// Which spellings of a number a field accepts. Parsing is strict: a string that is not one
/// of these spellings is an error, never a number made of whatever digits it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFormat {
    /// `7.5`, `-3`, `1e3`, `1,234,567` (commas only between groups of three digits).
    Plain,
    /// Plain, or with a unit: `142 min`, `142 minutes`, `2h 22m`, `2h 22min`, `2h`.
    Minutes,
    /// Plain, or with a currency sign in front: `$63,000,000`, `€1,500`, `£20`.
    Money,
}

impl NumberFormat {
    /// The format of a dataset field.
    pub fn of_field(field: &str) -> Self {
        match field {
            "runtime_min" => NumberFormat::Minutes,
            "budget" | "gross" => NumberFormat::Money,
            _ => NumberFormat::Plain,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            NumberFormat::Plain => "a number such as 7.5, 1,234 or 1e3",
            NumberFormat::Minutes => "minutes such as 142, 142 min or 2h 22m",
            NumberFormat::Money => "an amount such as 63000000 or $63,000,000",
        }
    }
}

/// `7.5`, `1e3`, `1,234,567`: finite, with well-placed thousands separators.
fn parse_plain(t: &str) -> Option<f64> {
    let t = t.trim();
    let digits = if t.contains(',') {
        let (int, frac) = t.split_once('.').map_or((t, None), |(i, f)| (i, Some(f)));
        let unsigned = int.strip_prefix('-').unwrap_or(int);
        let groups: Vec<&str> = unsigned.split(',').collect();
        let well_grouped = (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
            && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()));
        if !well_grouped {
            return None;
        }
        t.replace(',', "")
    } else {
        t.to_string()
    };
    // Rust's parser also reads "inf" and "NaN"; only digits, sign, point and exponent count.
    let numeric_chars = digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    let x: f64 = digits.parse().ok()?;
    (numeric_chars && x.is_finite()).then_some(x)
}

/// `142 min`, `2h 22m`, `2 h 5 min`, `2h`.
fn parse_minutes(t: &str) -> Option<f64> {
    let t = t.trim();
    for unit in ["minutes", "mins", "min", "m"] {
        if let Some(n) = t.strip_suffix(unit).filter(|n| !n.contains('h')) {
            return parse_plain(n);
        }
    }
    let (hours, rest) = t.split_once('h')?;
    let hours: u32 = hours.trim().parse().ok()?;
    let rest = rest.trim();
    let minutes = if rest.is_empty() {
        0.0
    } else {
        let m = ["minutes", "mins", "min", "m"]
            .iter()
            .find_map(|u| rest.strip_suffix(u))?;
        let m: u32 = m.trim().parse().ok()?;
        f64::from(m)
    };
    Some(f64::from(hours) * 60.0 + minutes)
}

fn parse_money(t: &str) -> Option<f64> {
    let t = t.trim();
    let unsigned = ["$", "€", "£", "USD", "EUR", "GBP"]
        .iter()
        .find_map(|c| t.strip_prefix(c))
        .unwrap_or(t);
    parse_plain(unsigned)
}

/// Reads one number from a string in the given format.
pub fn parse_number(s: &str, format: NumberFormat) -> Result<f64, String> {
    let parsed = match format {
        NumberFormat::Plain => parse_plain(s),
        NumberFormat::Minutes => parse_plain(s).or_else(|| parse_minutes(s)),
        NumberFormat::Money => parse_money(s),
    };
    parsed.ok_or_else(|| format!("expected {}, got {}", format.expected(), shown(s)))
}

/// A value for an error message: quoted, and cut after 60 characters (a malformed value can
/// be megabytes long).
pub fn shown(s: &str) -> String {
    const KEEP: usize = 60;
    match s.char_indices().nth(KEEP) {
        None => format!("{s:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes in all)", &s[..end], s.len()),
    }
}

/// A year from a whole number, refused (not clamped) when it does not fit.
pub fn as_year(v: &Value) -> Result<Option<i32>, String> {
    match as_count(v)? {
        None => Ok(None),
        Some(y) if y <= 9999 => Ok(Some(y as i32)),
        Some(y) => Err(format!("expected a year, got {y}")),
    }
}

/// A number stored as `f32` (runtime, rating): one past its range is refused as written
/// rather than stored as infinity.
pub fn as_f32(v: Option<f64>) -> Result<Option<f32>, String> {
    match v {
        Some(x) if x.abs() > f64::from(f32::MAX) => Err(format!("out of range, got {x:e}")),
        v => Ok(v.map(|x| x as f32)),
    }
}

/// A number from a JSON number or a string in `format`; missing markers give `None`.
pub fn as_number(v: &Value, format: NumberFormat) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if is_missing_text(s) => Ok(None),
        Value::String(s) => parse_number(s, format).map(Some),
        Value::Array(a) => a.first().map_or(Ok(None), |x| as_number(x, format)),
        other => Err(format!(
            "expected {}, got {}",
            format.expected(),
            shown(&other.to_string())
        )),
    }
}

/// A whole number that is at least zero (a year, a vote count).
pub fn as_count(v: &Value) -> Result<Option<u64>, String> {
    match as_number(v, NumberFormat::Plain)? {
        None => Ok(None),
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Ok(Some(x as u64)),
        Some(x) => Err(format!("expected a whole number >= 0, got {x}")),
    }
}

/// A list from a list, a string separated by commas or `|`, or a single value.
pub fn as_list(v: &Value) -> Option<Vec<String>> {
    let items: Vec<String> = match v {
        Value::Array(a) => a.iter().filter_map(as_text).collect(),
        Value::String(s) if is_missing_text(s) => Vec::new(),
        Value::String(s) => s
            .split([',', '|'])
            .map(|x| x.trim().to_string())
            .filter(|x| !is_missing_text(x))
            .collect(),
        Value::Object(_) => as_text(v).into_iter().collect(),
        _ => Vec::new(),
    };
    (!items.is_empty()).then_some(items)
}

/// Decodes bytes as UTF-8, line by line: a line that is not UTF-8 is read as Latin-1 (files
/// with odd encodings), without changing how the other lines read.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len());
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(l) => out.push_str(l),
            Err(_) => out.extend(line.iter().map(|b| char::from(*b))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str, f: NumberFormat) -> Result<f64, String> {
        parse_number(s, f)
    }

    #[test]
    fn a_number_past_f32_is_refused_as_written() {
        assert_eq!(as_f32(Some(7.5)), Ok(Some(7.5)));
        assert_eq!(as_f32(None), Ok(None));
        assert_eq!(as_f32(Some(-1e39)), Err("out of range, got -1e39".into()));
    }

    #[test]
    fn documented_spellings_parse() {
        use NumberFormat::*;
        for (s, f, want) in [
            ("7.5", Plain, 7.5),
            ("-3", Plain, -3.0),
            ("1e3", Plain, 1000.0),
            ("1,234", Plain, 1234.0),
            ("1,234,567.5", Plain, 1_234_567.5),
            ("142 min", Minutes, 142.0),
            ("142", Minutes, 142.0),
            ("2h 22m", Minutes, 142.0),
            ("2h 22min", Minutes, 142.0),
            ("2 h 5 min", Minutes, 125.0),
            ("2h", Minutes, 120.0),
            ("$63,000,000", Money, 63e6),
            ("€1,500", Money, 1500.0),
        ] {
            assert_eq!(n(s, f), Ok(want), "{s}");
        }
    }

    #[test]
    fn loose_spellings_are_errors_not_invented_numbers() {
        use NumberFormat::*;
        for (s, f) in [
            ("7.5/10", Plain),
            ("2h 5min", Plain),
            ("$1.5M", Money),
            ("8.1 (12 votes)", Plain),
            ("12,34", Plain),
            ("1,2345", Plain),
            ("NaN", Plain),
            ("inf", Plain),
            ("1e400", Plain),
            ("about 90 min", Minutes),
            ("2h 61x", Minutes),
        ] {
            let e = n(s, f).unwrap_err();
            assert!(e.contains("expected") && e.contains(s), "{s}: {e}");
        }
    }

    #[test]
    fn one_bad_byte_garbles_only_its_own_line() {
        let mut bytes = "café\n".as_bytes().to_vec();
        bytes.extend([b'x', 0xE9, b'\n']);
        bytes.extend("résumé".as_bytes());
        assert_eq!(decode_text(&bytes), "café\nxé\nrésumé");
    }

    #[test]
    fn huge_values_are_cut_in_messages_and_huge_years_refused() {
        let e = parse_number(
            &"9".repeat(10_000_000).replace('9', "x"),
            NumberFormat::Plain,
        )
        .unwrap_err();
        assert!(
            e.len() < 200 && e.contains("10000000 bytes"),
            "{}",
            &e[..e.len().min(300)]
        );
        let e = as_year(&serde_json::json!(99_999_999_999u64)).unwrap_err();
        assert!(e.contains("99999999999"), "{e}");
        assert_eq!(as_year(&serde_json::json!(1999)), Ok(Some(1999)));
    }

    #[test]
    fn counts_are_whole_and_lists_split_on_pipes() {
        assert_eq!(as_count(&Value::String("1,234".into())), Ok(Some(1234)));
        assert!(as_count(&Value::String("12.5".into())).is_err());
        assert!(as_count(&serde_json::json!(-4)).is_err());
        assert_eq!(
            as_list(&Value::String("Drama|Comedy, Crime".into())),
            Some(vec!["Drama".into(), "Comedy".into(), "Crime".into()])
        );
    }
}
