//! Categorical vocabularies (with missing and out-of-vocabulary slots) and the genre vocabulary.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Index 0 is "missing", index 1 is "out of vocabulary"; known values start at 2.
pub const MISSING_ID: u32 = 0;
pub const OOV_ID: u32 = 1;

/// Read back through `StoredVocab`, so that a vocabulary from any file has its lookup index:
/// one left empty maps every value to `OOV_ID` (as declared categorical extras once did in
/// `predict`, `serve` and evaluation on other data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "StoredVocab")]
pub struct Vocab {
    pub name: String,
    pub min_freq: usize,
    /// Known values in id order (id = position + 2).
    pub values: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

/// A vocabulary's fields as stored.
#[derive(Deserialize)]
struct StoredVocab {
    name: String,
    min_freq: usize,
    values: Vec<String>,
}

impl From<StoredVocab> for Vocab {
    fn from(s: StoredVocab) -> Self {
        let mut vocab = Vocab {
            name: s.name,
            min_freq: s.min_freq,
            values: s.values,
            index: HashMap::new(),
        };
        vocab.rebuild_index();
        vocab
    }
}

fn normalize(value: &str) -> String {
    value.trim().to_lowercase()
}

impl Vocab {
    /// Counts values on the training records and keeps those seen at least `min_freq` times,
    /// most frequent first (ties by name, so the order is deterministic).
    pub fn fit<'a>(name: &str, values: impl Iterator<Item = &'a str>, min_freq: usize) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for v in values {
            let v = normalize(v);
            if !v.is_empty() {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, c)| *c >= min_freq.max(1))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut vocab = Vocab {
            name: name.to_string(),
            min_freq,
            values: kept.into_iter().map(|(v, _)| v).collect(),
            index: HashMap::new(),
        };
        vocab.rebuild_index();
        vocab
    }

    /// Builds the lookup from `values` (every constructor and deserialisation calls it).
    fn rebuild_index(&mut self) {
        self.index = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as u32 + 2))
            .collect();
    }

    /// Total number of ids including the missing and OOV slots.
    pub fn size(&self) -> usize {
        self.values.len() + 2
    }

    pub fn id(&self, value: Option<&str>) -> u32 {
        match value.map(normalize).filter(|v| !v.is_empty()) {
            None => MISSING_ID,
            Some(v) => self.index.get(&v).copied().unwrap_or(OOV_ID),
        }
    }
}

/// The genres kept for training: those with at least `min_count` training movies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenreVocab {
    pub genres: Vec<String>,
    /// Training counts of each kept genre (same order), used for `pos_weight`.
    pub train_counts: Vec<usize>,
    /// Genres dropped for being rarer than `min_count`, with their counts.
    pub dropped: BTreeMap<String, usize>,
    pub train_movies_with_genres: usize,
}

impl GenreVocab {
    pub fn fit<'a>(genre_lists: impl Iterator<Item = &'a [String]>, min_count: usize) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut with = 0;
        for list in genre_lists {
            if list.is_empty() {
                continue;
            }
            with += 1;
            let mut seen: Vec<&String> = list.iter().collect();
            seen.sort();
            seen.dedup();
            for g in seen {
                *counts.entry(g.trim().to_string()).or_default() += 1;
            }
        }
        let (kept, dropped): (Vec<_>, Vec<_>) = counts
            .into_iter()
            .partition(|(_, c)| *c >= min_count.max(1));
        let mut kept = kept;
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        GenreVocab {
            genres: kept.iter().map(|(g, _)| g.clone()).collect(),
            train_counts: kept.iter().map(|(_, c)| *c).collect(),
            dropped: dropped.into_iter().collect(),
            train_movies_with_genres: with,
        }
    }

    pub fn len(&self) -> usize {
        self.genres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.genres.is_empty()
    }

    /// Multi-hot vector; genres outside the vocabulary are ignored.
    pub fn multi_hot(&self, genres: &[String]) -> Vec<f32> {
        let mut out = vec![0.0; self.genres.len()];
        for g in genres {
            if let Some(i) = self.genres.iter().position(|k| k == g.trim()) {
                out[i] = 1.0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_has_missing_oov_and_min_freq() {
        let vals = ["PG", "pg", "R", "R", "R", "G"];
        let v = Vocab::fit("certificate", vals.iter().copied(), 2);
        assert_eq!(v.values, vec!["r".to_string(), "pg".to_string()]);
        assert_eq!(v.id(Some("R")), 2);
        assert_eq!(v.id(Some(" Pg ")), 3);
        assert_eq!(v.id(Some("G")), OOV_ID);
        assert_eq!(v.id(None), MISSING_ID);
        assert_eq!(v.id(Some("  ")), MISSING_ID);
        assert_eq!(v.size(), 4);
        let json = serde_json::to_string(&v).unwrap();
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back.id(Some("pg")), 3, "read back with its index");
        assert_eq!(back, v);
    }

    #[test]
    fn genre_vocab_drops_rare_and_builds_multi_hot() {
        let lists = [
            vec!["Drama".to_string(), "Comedy".to_string()],
            vec!["Drama".to_string()],
            vec!["Western".to_string(), "Drama".to_string()],
            vec!["Comedy".to_string()],
            vec![],
        ];
        let v = GenreVocab::fit(lists.iter().map(|l| l.as_slice()), 2);
        assert_eq!(v.genres, vec!["Drama", "Comedy"]);
        assert_eq!(v.train_counts, vec![3, 2]);
        assert_eq!(v.dropped.get("Western"), Some(&1));
        assert_eq!(v.train_movies_with_genres, 4);
        assert_eq!(
            v.multi_hot(&["Comedy".into(), "Western".into()]),
            vec![0.0, 1.0]
        );
    }
}
