//! A trained gradient-boosted forest as flat arrays: every node of every tree in one table
//! (feature, threshold, children, leaf value, the categories a categorical split sends left).
//! The same arrays are what `rating_trees.safetensors` stores and what the PyTorch reference
//! (`scripts/cinefuse_torch.py`) walks, so Rust and Python score one representation.
//!
//! A row is walked from a tree's root: a missing value (NaN) follows the node's `missing`
//! child; a categorical split sends category `c` left when bit `c` of its bitset is set; a
//! numeric split sends `x < threshold` left. The prediction is `base` plus the leaves' values.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use forust_ml::GradientBooster;
use forust_ml::tree::Tree;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    pub base: f64,
    /// The node index of each tree's root.
    pub roots: Vec<i32>,
    pub feature: Vec<i32>,
    pub threshold: Vec<f64>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    pub missing: Vec<i32>,
    pub is_leaf: Vec<u8>,
    pub value: Vec<f32>,
    pub is_cat: Vec<u8>,
    /// Bytes of each node's category bitset (rows of `cats`).
    pub cat_bytes: usize,
    /// `[nodes, cat_bytes]`: bit `c % 8` of byte `c / 8` set when category `c` goes left.
    pub cats: Vec<u8>,
}

impl Forest {
    /// The booster's trees, each laid out parent before children. forust splits numbers only,
    /// so the forest has no categorical splits (the format keeps them for other boosters).
    pub fn from_booster(booster: &GradientBooster) -> Result<Self> {
        let mut forest = Forest {
            base: booster.base_score,
            ..Forest::empty()
        };
        // The trees `predict` uses: all of them, or the first `prediction_iteration`.
        let used = booster.prediction_iteration.unwrap_or(booster.trees.len());
        for tree in booster.trees.iter().take(used) {
            forest.push_tree(tree)?;
        }
        Ok(forest)
    }

    /// A forest of no tree, its base 0.
    pub(crate) fn empty() -> Self {
        Forest {
            base: 0.0,
            roots: Vec::new(),
            feature: Vec::new(),
            threshold: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            missing: Vec::new(),
            is_leaf: Vec::new(),
            value: Vec::new(),
            is_cat: Vec::new(),
            cat_bytes: 0,
            cats: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.feature.len()
    }

    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    /// Appends `tree` in breadth-first order from its root (node 0).
    fn push_tree(&mut self, tree: &Tree) -> Result<()> {
        let node = |num: usize| {
            tree.nodes
                .get(num)
                .filter(|n| n.num == num)
                .with_context(|| format!("a tree has no node {num} where a split points"))
        };
        let start = self.len();
        let mut order = vec![0usize];
        let mut at = HashMap::new();
        let mut i = 0;
        while i < order.len() {
            let n = node(order[i])?;
            at.insert(n.num, start + i);
            if !n.is_leaf {
                order.push(n.left_child);
                order.push(n.right_child);
                if n.missing_node != n.left_child && n.missing_node != n.right_child {
                    order.push(n.missing_node);
                }
            }
            i += 1;
        }
        self.roots.push(start as i32);
        for num in &order {
            let n = node(*num)?;
            let index = |child: usize| if n.is_leaf { -1 } else { at[&child] as i32 };
            self.feature.push(if n.is_leaf {
                -1
            } else {
                n.split_feature as i32
            });
            self.threshold.push(n.split_value);
            self.left.push(index(n.left_child));
            self.right.push(index(n.right_child));
            self.missing.push(index(n.missing_node));
            self.is_leaf.push(u8::from(n.is_leaf));
            self.value.push(n.weight_value);
            self.is_cat.push(0);
        }
        Ok(())
    }

    /// The forest's prediction for one row of features (NaN: missing).
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        let leaves: f64 = self
            .roots
            .iter()
            .map(|r| {
                let mut node = *r as usize;
                while self.is_leaf[node] == 0 {
                    node = self.child(node, x.get(self.feature[node] as usize).copied());
                }
                f64::from(self.value[node])
            })
            .sum();
        self.base + leaves
    }

    fn child(&self, node: usize, v: Option<f64>) -> usize {
        let next = match v {
            None => self.missing[node],
            Some(v) if v.is_nan() => self.missing[node],
            Some(v) if self.is_cat[node] == 1 => {
                let bits = &self.cats[node * self.cat_bytes..(node + 1) * self.cat_bytes];
                let c = v as usize;
                let left = bits.get(c / 8).is_some_and(|b| (b >> (c % 8)) & 1 == 1);
                if left {
                    self.left[node]
                } else {
                    self.right[node]
                }
            }
            Some(v) if v < self.threshold[node] => self.left[node],
            Some(_) => self.right[node],
        };
        next as usize
    }

    /// The arrays as safetensors entries named `{prefix}.{field}`.
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
        let entry = |field: &str, dtype, len: usize, bytes: Vec<u8>| {
            let shape = match field {
                "cats" => vec![len, self.cat_bytes],
                _ => vec![len],
            };
            (format!("{prefix}.{field}"), dtype, shape, bytes)
        };
        let i32s = |field, v: &[i32]| entry(field, Dtype::I32, v.len(), le(v, i32::to_le_bytes));
        let f64s = |field, v: &[f64]| entry(field, Dtype::F64, v.len(), le(v, f64::to_le_bytes));
        let u8s = |field, v: &[u8], len| entry(field, Dtype::U8, len, v.to_vec());
        vec![
            f64s("base", &[self.base]),
            i32s("roots", &self.roots),
            i32s("feature", &self.feature),
            f64s("threshold", &self.threshold),
            i32s("left", &self.left),
            i32s("right", &self.right),
            i32s("missing", &self.missing),
            u8s("is_leaf", &self.is_leaf, self.is_leaf.len()),
            entry(
                "value",
                Dtype::F32,
                self.value.len(),
                le(&self.value, f32::to_le_bytes),
            ),
            u8s("is_cat", &self.is_cat, self.is_cat.len()),
            // One row of `cat_bytes` category bits per node.
            u8s("cats", &self.cats, self.is_cat.len()),
        ]
    }

    /// Reads the forest `prefix` from `st`, checking that every walk ends at a leaf.
    pub fn from_tensors(st: &SafeTensors, prefix: &str) -> Result<Self> {
        let get = |field: &str| -> Result<TensorView<'_>> {
            st.tensor(&format!("{prefix}.{field}"))
                .with_context(|| format!("tensor `{prefix}.{field}` is missing"))
        };
        let i32s = |field| numbers(&get(field)?, Dtype::I32, i32::from_le_bytes);
        let u8s = |field| numbers(&get(field)?, Dtype::U8, u8::from_le_bytes);
        let cats = get("cats")?;
        let forest = Forest {
            base: numbers(&get("base")?, Dtype::F64, f64::from_le_bytes)?
                .first()
                .copied()
                .unwrap_or(f64::NAN),
            roots: i32s("roots")?,
            feature: i32s("feature")?,
            threshold: numbers(&get("threshold")?, Dtype::F64, f64::from_le_bytes)?,
            left: i32s("left")?,
            right: i32s("right")?,
            missing: i32s("missing")?,
            is_leaf: u8s("is_leaf")?,
            value: numbers(&get("value")?, Dtype::F32, f32::from_le_bytes)?,
            is_cat: u8s("is_cat")?,
            cat_bytes: cats.shape().get(1).copied().unwrap_or(0),
            cats: u8s("cats")?,
        };
        forest
            .check()
            .with_context(|| format!("forest `{prefix}` is malformed"))?;
        Ok(forest)
    }

    /// Lengths agree, values are finite, and every child comes after its parent inside the
    /// table, so no walk can loop or run off it.
    fn check(&self) -> Result<()> {
        let n = self.len();
        let lens = [
            self.threshold.len(),
            self.left.len(),
            self.right.len(),
            self.missing.len(),
            self.is_leaf.len(),
            self.value.len(),
            self.is_cat.len(),
        ];
        if lens.iter().any(|l| *l != n) || self.cats.len() != n * self.cat_bytes {
            bail!("its arrays have different lengths");
        }
        if !self.base.is_finite() || self.value.iter().any(|v| !v.is_finite()) {
            bail!("it has a value that is not finite");
        }
        if self.roots.iter().any(|r| *r < 0 || *r as usize >= n) {
            bail!("a root is outside the node table");
        }
        for i in (0..n).filter(|i| self.is_leaf[*i] == 0) {
            let after = |c: i32| c > i as i32 && (c as usize) < n;
            if !(after(self.left[i]) && after(self.right[i]) && after(self.missing[i])) {
                bail!("node {i} has a child that is not after it in the table");
            }
            if self.feature[i] < 0 {
                bail!("node {i} splits on a negative feature index");
            }
        }
        Ok(())
    }
}

/// Named tensors `(name, dtype, shape, little-endian bytes)` as a safetensors file whose one
/// metadata entry `key` holds `meta` as JSON. One entry, because safetensors writes a map's
/// entries in hash order: several would make the same content a different file each run.
pub(crate) fn to_safetensors(
    entries: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    key: &str,
    meta: &impl serde::Serialize,
) -> Result<Vec<u8>> {
    let views = entries
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([(key.to_string(), serde_json::to_string(meta)?)]);
    Ok(safetensors::tensor::serialize(views, Some(meta))?)
}

/// Numbers as little-endian bytes.
pub(crate) fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to(*v)).collect()
}

/// A tensor's numbers, refused unless it has the `want` dtype.
pub(crate) fn numbers<T, const N: usize>(
    t: &TensorView<'_>,
    want: Dtype,
    from: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    if t.dtype() != want {
        bail!("dtype {:?}, expected {want:?}", t.dtype());
    }
    Ok(t.data()
        .chunks_exact(N)
        .map(|b| from(b.try_into().expect("chunks of N bytes")))
        .collect())
}

/// Rows of features laid out column by column, as forust's `Matrix` reads them.
pub(crate) fn column_major(rows: &[Vec<f64>]) -> Vec<f64> {
    let cols = rows.first().map_or(0, Vec::len);
    (0..cols)
        .flat_map(|j| rows.iter().map(move |r| r[j]))
        .collect()
}

#[cfg(test)]
mod tests {
    use forust_ml::Matrix;
    use forust_ml::objective::ObjectiveType;

    use super::*;

    /// Rows where the target depends on a numeric column with gaps and on a code column: the
    /// kinds of split forust learns (numeric, missing to either side).
    fn table(n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let x = ((i * 37) % 101) as f64 / 10.0;
            let code = (1 + i * 7 % 13) as f64;
            let gap = i % 9 == 0;
            let bump = if code > 8.0 { 2.0 } else { 0.0 };
            y.push(if gap { 4.0 } else { 0.3 * x } + bump);
            rows.push(vec![if gap { f64::NAN } else { x }, code, (i % 5) as f64]);
        }
        (rows, y)
    }

    fn fitted(rows: &[Vec<f64>], y: &[f64]) -> GradientBooster {
        let data = column_major(rows);
        let mut b = GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(60)
            .set_learning_rate(0.2);
        b.fit_unweighted(&Matrix::new(&data, rows.len(), rows[0].len()), y, None)
            .expect("fits");
        b
    }

    #[test]
    fn the_flat_forest_predicts_what_the_booster_does() {
        let (rows, y) = table(400);
        let booster = fitted(&rows, &y);
        let forest = Forest::from_booster(&booster).unwrap();
        assert_eq!(forest.roots.len(), 60);
        let data = column_major(&rows);
        let want = booster.predict(&Matrix::new(&data, rows.len(), rows[0].len()), false);
        for (r, w) in rows.iter().zip(&want) {
            assert!((forest.predict_row(r) - w).abs() < 1e-9, "{r:?}");
        }
        let gap_goes_somewhere = forest
            .missing
            .iter()
            .zip(&forest.is_leaf)
            .all(|(m, leaf)| (*leaf == 1) == (*m < 0));
        assert!(gap_goes_somewhere, "a split without a missing branch");
        let mae: f64 = rows
            .iter()
            .zip(&y)
            .map(|(r, t)| (forest.predict_row(r) - t).abs())
            .sum::<f64>()
            / y.len() as f64;
        assert!(mae < 0.3, "the trees did not learn the table: MAE {mae}");
    }

    /// One tree: a numeric split on field 0 (gaps right) whose right child splits field 1 by
    /// category, {2, 9} left, gaps left.
    fn handmade() -> Forest {
        Forest {
            base: 1.0,
            roots: vec![0],
            feature: vec![0, -1, 1, -1, -1],
            threshold: vec![0.5, 0.0, 0.0, 0.0, 0.0],
            left: vec![1, -1, 3, -1, -1],
            right: vec![2, -1, 4, -1, -1],
            missing: vec![2, -1, 3, -1, -1],
            is_leaf: vec![0, 1, 0, 1, 1],
            value: vec![0.0, 10.0, 0.0, 20.0, 30.0],
            is_cat: vec![0, 0, 1, 0, 0],
            cat_bytes: 2,
            // Node 2's two bytes: bit 2 of byte 0 (category 2), bit 1 of byte 1 (category 9).
            cats: vec![0, 0, 0, 0, 1 << 2, 1 << 1, 0, 0, 0, 0],
        }
    }

    #[test]
    fn a_handmade_forest_walks_every_kind_of_split() {
        let f = handmade();
        let nan = f64::NAN;
        let cases = [
            ([0.4, 9.0], 11.0),  // numeric left
            ([0.5, 9.0], 21.0),  // x == threshold goes right; 9 is in the set
            ([nan, 2.0], 21.0),  // a numeric gap goes right; 2 in the set
            ([0.9, 3.0], 31.0),  // 3 not in the set
            ([0.9, 40.0], 31.0), // beyond the bitset: not in the set
            ([0.9, nan], 21.0),  // a categorical gap goes left
        ];
        for (row, want) in cases {
            assert_eq!(f.predict_row(&row), want, "{row:?}");
        }
        assert_eq!(round_trip(&f).expect("loads"), f);
    }

    fn round_trip(forest: &Forest) -> Result<Forest> {
        let entries = forest.tensors("f");
        let views: Vec<_> = entries
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
            .collect();
        let bytes = safetensors::tensor::serialize(views, None).expect("serialise");
        Forest::from_tensors(&SafeTensors::deserialize(&bytes).expect("read"), "f")
    }

    #[test]
    fn a_forest_survives_safetensors_and_a_looping_one_is_refused() {
        let (rows, y) = table(200);
        let forest = Forest::from_booster(&fitted(&rows, &y)).unwrap();
        assert_eq!(round_trip(&forest).expect("loads"), forest);
        let inner = forest
            .is_leaf
            .iter()
            .position(|l| *l == 0)
            .expect("a split");
        let mut looping = forest.clone();
        looping.left[inner] = inner as i32;
        let err = round_trip(&looping).unwrap_err();
        assert!(format!("{err:#}").contains("not after it"), "{err:#}");
        let mut short = forest;
        short.value.pop();
        assert!(round_trip(&short).is_err());
    }

    #[test]
    fn an_unseen_category_and_a_short_row_take_defined_paths() {
        let (rows, y) = table(200);
        let forest = Forest::from_booster(&fitted(&rows, &y)).unwrap();
        let unseen = forest.predict_row(&[3.0, 1000.0, 1.0]);
        let missing = forest.predict_row(&[3.0]);
        assert!(unseen.is_finite() && missing.is_finite());
    }
}
