//! Lenient conversion of foreign values (strings, numbers, lists) into dataset fields.

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

/// A number from a number or a string such as "1,234", "142 min", "$63,000,000".
pub fn as_number(v: &Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if is_missing_text(s) => Ok(None),
        Value::String(s) => {
            let cleaned: String = s
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
                .collect();
            let first = cleaned.split_whitespace().next().unwrap_or("");
            first
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("expected a number, got {s:?}"))
        }
        Value::Array(a) => a.first().map_or(Ok(None), as_number),
        other => Err(format!("expected a number, got {other}")),
    }
}

/// A list from a list, a comma-separated string or a single value.
pub fn as_list(v: &Value) -> Option<Vec<String>> {
    let items: Vec<String> = match v {
        Value::Array(a) => a.iter().filter_map(as_text).collect(),
        Value::String(s) if is_missing_text(s) => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !is_missing_text(x))
            .collect(),
        Value::Object(_) => as_text(v).into_iter().collect(),
        _ => Vec::new(),
    };
    (!items.is_empty()).then_some(items)
}

/// Decodes bytes as UTF-8, falling back to Latin-1 for files with odd encodings.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}
