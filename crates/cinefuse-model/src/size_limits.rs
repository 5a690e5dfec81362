//! Upper bounds on the sizes a config or a saved model may ask for. A typo such as
//! `d_model = 64000000`, or a hand-edited `shapes` in a manifest, would otherwise reach the
//! allocator, which aborts the process instead of returning an error. The bounds sit far above
//! any model cinefuse trains (MiniLM: 384 wide, 6 layers; BERT-large: 1024 wide, its
//! feed-forward 4096, 24 layers).

/// Any layer's width, feed-forward size, channel count or embedding size.
pub const MAX_WIDTH: usize = 16_384;
/// Layers of one encoder, blocks of one stage, heads of one attention.
pub const MAX_LAYERS: usize = 64;
/// Rows of one embedding table (a vocabulary, a category's values, hashed n-gram buckets).
pub const MAX_TABLE_ROWS: usize = 1 << 24;
/// Values of one embedding table, rows × width: 4 GiB of f32.
pub const MAX_TABLE_VALUES: usize = 1 << 30;
/// Genres one model predicts.
pub const MAX_GENRES: usize = 4096;
/// Numeric inputs of the metadata encoder.
pub const MAX_NUMERIC: usize = 1 << 16;

/// `value` in `1..=max`, or an error naming `key`.
pub fn check_size(key: &str, value: usize, max: usize) -> Result<(), String> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{key} = {value}: expected 1..={max}"))
    }
}

/// `value` at most `max` (0 allowed: a count of optional inputs), or an error naming `key`.
pub fn check_at_most(key: &str, value: usize, max: usize) -> Result<(), String> {
    if value <= max {
        Ok(())
    } else {
        Err(format!("{key} = {value}: expected at most {max}"))
    }
}

/// A table of `rows` × `width` values within `MAX_TABLE_VALUES`, or an error naming `key`.
pub fn check_table(key: &str, rows: usize, width: usize) -> Result<(), String> {
    match rows.checked_mul(width) {
        Some(n) if n <= MAX_TABLE_VALUES => Ok(()),
        _ => Err(format!(
            "{key}: a table of {rows} rows × {width} values is larger than the \
             {MAX_TABLE_VALUES} values allowed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_the_bounds_are_refused_by_name() {
        assert!(check_size("k", 1, 4).is_ok());
        assert!(check_size("k", 4, 4).is_ok());
        assert_eq!(
            check_size("a.b", 0, 4).unwrap_err(),
            "a.b = 0: expected 1..=4"
        );
        assert!(check_size("a.b", 5, 4).unwrap_err().starts_with("a.b = 5"));
    }

    #[test]
    fn tables_are_bounded_by_their_values_and_never_overflow() {
        assert!(check_table("t", 1 << 20, 1 << 10).is_ok());
        assert!(check_table("t", (1 << 20) + 1, 1 << 10).is_err());
        assert!(
            check_table("t", usize::MAX, 2)
                .unwrap_err()
                .starts_with("t: ")
        );
    }
}
