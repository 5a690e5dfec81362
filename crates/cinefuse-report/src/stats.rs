//! Small statistics used by the reports.

/// Pearson correlation over pairs where both values are present (NaN when undefined).
pub fn pearson(x: &[Option<f64>], y: &[Option<f64>]) -> (f64, usize) {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
        .collect();
    let n = pairs.len();
    if n < 3 {
        return (f64::NAN, n);
    }
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return (f64::NAN, n);
    }
    (sxy / (sxx.sqrt() * syy.sqrt()), n)
}

/// Quartiles (min, q1, median, q3, max) by linear interpolation.
pub fn quartiles(values: &[f64]) -> Option<[f64; 5]> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some([v[0], q(0.25), q(0.5), q(0.75), v[v.len() - 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_matches_hand_values() {
        let x: Vec<Option<f64>> = vec![Some(1.0), Some(2.0), Some(3.0), None, Some(4.0)];
        let y: Vec<Option<f64>> = vec![Some(2.0), Some(4.0), Some(6.0), Some(1.0), Some(8.0)];
        let (r, n) = pearson(&x, &y);
        assert_eq!(n, 4);
        assert!((r - 1.0).abs() < 1e-12);
        let y2: Vec<Option<f64>> = vec![Some(4.0), Some(3.0), Some(2.0), None, Some(1.0)];
        assert!((pearson(&x, &y2).0 + 1.0).abs() < 1e-12);
    }

    #[test]
    fn quartiles_of_one_to_five() {
        assert_eq!(
            quartiles(&[5.0, 1.0, 3.0, 2.0, 4.0]),
            Some([1.0, 2.0, 3.0, 4.0, 5.0])
        );
        assert_eq!(quartiles(&[]), None);
    }
}
