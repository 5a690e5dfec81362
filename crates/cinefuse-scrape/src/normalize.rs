//! Normalization of the values IMDb pages spell in many ways.

/// "PT2H22M", "PT142M", "142 min", "2h 22m", "142" → minutes.
pub fn runtime_minutes(raw: &str) -> Option<f32> {
    let s = raw.trim();
    if let Some(iso) = s.strip_prefix("PT").or_else(|| s.strip_prefix("pt")) {
        let (mut minutes, mut num) = (0.0f32, String::new());
        for c in iso.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let v: f32 = num.parse().ok()?;
                num.clear();
                match c.to_ascii_uppercase() {
                    'H' => minutes += v * 60.0,
                    'M' => minutes += v,
                    'S' => minutes += v / 60.0,
                    _ => return None,
                }
            }
        }
        return (minutes > 0.0).then_some(minutes.round());
    }
    let lower = s.to_lowercase();
    let mut minutes = 0.0f32;
    let mut num = String::new();
    let mut any = false;
    let mut chars = lower.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c == ' ' && !num.is_empty() {
            continue;
        }
        if !num.is_empty() {
            let v: f32 = num.parse().ok()?;
            num.clear();
            match c {
                'h' => minutes += v * 60.0,
                'm' => minutes += v,
                _ => return None,
            }
            any = true;
            // Skip the rest of the unit word ("min", "hours").
            while chars.peek().is_some_and(|c| c.is_alphabetic()) {
                chars.next();
            }
        }
    }
    if !num.is_empty() {
        minutes += num.parse::<f32>().ok()?;
        any = true;
    }
    (any && minutes > 0.0).then_some(minutes)
}

/// "2.9M", "934K", "2,934,112", "1 936 575" → count.
pub fn vote_count(raw: &str) -> Option<u64> {
    let s: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ',' | ' ' | '\u{a0}' | '_'))
        .collect();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'B' => (&s[..s.len() - 1], 1e9),
        _ => (s.as_str(), 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0).then(|| (v * mult).round() as u64)
}

/// "$63,000,000 (estimated)", "63000000", "€1.2M" → amount (currency ignored).
pub fn money(raw: &str) -> Option<f64> {
    let start = raw.find(|c: char| c.is_ascii_digit())?;
    let rest = &raw[start..];
    let end = rest
        .find(|c: char| {
            !(c.is_ascii_digit() || c == ',' || c == '.' || c == 'M' || c == 'K' || c == 'B')
        })
        .unwrap_or(rest.len());
    vote_count(&rest[..end]).map(|v| v as f64)
}

/// Decodes the HTML entities IMDb leaves inside JSON strings (`&apos;`, `&amp;`, `&#39;`, …).
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // Bytes, not a string slice: byte 12 may fall inside a multi-byte character, and
        // `;` is ASCII, so its position is always a character boundary.
        let window = &rest.as_bytes()[..rest.len().min(12)];
        let Some(end) = window.iter().position(|&b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses whitespace (including non-breaking spaces) and trims.
pub fn clean_text(s: &str) -> String {
    decode_entities(s)
        .split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes() {
        assert_eq!(runtime_minutes("PT2H22M"), Some(142.0));
        assert_eq!(runtime_minutes("PT142M"), Some(142.0));
        assert_eq!(runtime_minutes("142 min"), Some(142.0));
        assert_eq!(runtime_minutes("2h 22m"), Some(142.0));
        assert_eq!(runtime_minutes("2 hours 22 minutes"), Some(142.0));
        assert_eq!(runtime_minutes("95"), Some(95.0));
        assert_eq!(runtime_minutes("soon"), None);
        assert_eq!(runtime_minutes(""), None);
    }

    #[test]
    fn votes_and_money() {
        assert_eq!(vote_count("2.9M"), Some(2_900_000));
        assert_eq!(vote_count("934K"), Some(934_000));
        assert_eq!(vote_count("2,934,112"), Some(2_934_112));
        assert_eq!(vote_count("1\u{a0}936\u{a0}575"), Some(1_936_575));
        assert_eq!(vote_count("n/a"), None);
        assert_eq!(money("$63,000,000 (estimated)"), Some(63_000_000.0));
        assert_eq!(money("€1.2M"), Some(1_200_000.0));
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("Schindler&apos;s List &amp; more"),
            "Schindler's List & more"
        );
        assert_eq!(decode_entities("caf&#233; &#x41;"), "café A");
        assert_eq!(decode_entities("a & b &unknown; c"), "a & b &unknown; c");
        assert_eq!(
            clean_text("  Sueños de\u{a0}libertad \n"),
            "Sueños de libertad"
        );
    }

    #[test]
    fn entities_next_to_multibyte_characters() {
        assert_eq!(
            decode_entities("Tom &amp; B — café with friends"),
            "Tom & B — café with friends"
        );
        assert_eq!(decode_entities("Tom & B — café"), "Tom & B — café");
        assert_eq!(decode_entities("&éééééééé"), "&éééééééé");
        assert_eq!(clean_text("&amp; B — café"), "& B — café");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// No string panics the normalizers; text without `&` passes through decoding.
        #[test]
        fn no_string_panics_the_normalizers(s in "(&|;|#|x|[0-9a-f]|amp|é|—|🎬|\\PC){0,40}") {
            let decoded = decode_entities(&s);
            if !s.contains('&') {
                proptest::prop_assert_eq!(&decoded, &s);
            }
            clean_text(&s);
            runtime_minutes(&s);
            vote_count(&s);
            money(&s);
        }
    }
}
