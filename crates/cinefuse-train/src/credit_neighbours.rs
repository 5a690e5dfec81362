//! The credits space of a neighbour vote (`neighbour_vote.rs`): the labelled movies that share
//! the most directors, cast members and writers (every declared `set` feature) with a movie,
//! each name weighted by its rarity among the voters (inverse document frequency), compared by
//! cosine similarity of the weighted name sets. The model's metadata keeps only the first
//! director and the lead actor, over a frequency cut; here every credited name counts, and the
//! few films that share a director and a writer vote for the genre together. Out of fold on
//! two seeds, beside the plot and metadata votes, it added 0.005–0.007 micro-F1 and 0.010–0.013
//! top-1 (docs/RESULTS.md).
//!
//! Stored sparse: a movie has a handful of the thousands of names, so each voter keeps its
//! names' columns, and a query walks the voters of each of its names.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::prepared::EncodedSample;
use cinefuse_data::split::{Split, fold_of};

use crate::neighbour_vote::{NeighbourVote, NeighboursConfig, VoteSpace};

pub const CREDIT_NEIGHBOURS_FILE: &str = "credit_neighbours.safetensors";

/// `[train.credit_neighbours]`, `ensemble --credit-neighbours`: k = 50, temperature 0.3 (a
/// shared name moves the similarity in large steps), prior 2.
pub type CreditNeighboursConfig = NeighboursConfig<300>;

/// The voters' names: a column per name, its weight, and each voter's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditIndex {
    /// Column → "role:name", sorted.
    pub names: Vec<String>,
    /// Column → ln((1 + N) / (1 + voters with the name)) + 1.
    pub idf: Vec<f32>,
    /// Voter v's columns are `columns[offsets[v]..offsets[v + 1]]`.
    pub offsets: Vec<u32>,
    pub columns: Vec<u32>,
    column_of: HashMap<String, u32>,
    /// Column → the voters that carry it.
    postings: Vec<Vec<u32>>,
    /// Voter → the length of its weighted name vector (0: no names).
    norms: Vec<f32>,
}

impl CreditIndex {
    /// The index of the voters' credit lists (each list's names counted once).
    pub fn fit(credits: &[Vec<String>]) -> Self {
        let mut names: Vec<String> = credits.iter().flatten().cloned().collect();
        names.sort_unstable();
        names.dedup();
        let column_of: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(c, n)| (n.as_str(), c as u32))
            .collect();
        let mut offsets = vec![0u32];
        let mut columns = Vec::new();
        let mut df = vec![0u32; names.len()];
        for list in credits {
            let mut own: Vec<u32> = list.iter().map(|n| column_of[n.as_str()]).collect();
            own.sort_unstable();
            own.dedup();
            for c in &own {
                df[*c as usize] += 1;
            }
            columns.extend(own);
            offsets.push(columns.len() as u32);
        }
        let n = credits.len() as f32;
        let idf = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        Self::from_parts(names, idf, offsets, columns).expect("a fitted index is consistent")
    }

    /// An index from its stored tables, checked, with its lookups rebuilt.
    pub fn from_parts(
        names: Vec<String>,
        idf: Vec<f32>,
        offsets: Vec<u32>,
        columns: Vec<u32>,
    ) -> Result<Self> {
        if idf.len() != names.len() || offsets.first() != Some(&0) {
            bail!("the credit names and their weights disagree");
        }
        if offsets.windows(2).any(|w| w[0] > w[1])
            || *offsets.last().unwrap() as usize != columns.len()
        {
            bail!("the credit offsets are not an increasing index into the columns");
        }
        if columns.iter().any(|c| *c as usize >= names.len()) {
            bail!("a credit column is not below {}", names.len());
        }
        if !idf.iter().all(|w| w.is_finite() && *w > 0.0) {
            bail!("a credit weight is not a positive number");
        }
        let mut postings = vec![Vec::new(); names.len()];
        let mut norms = Vec::with_capacity(offsets.len() - 1);
        for (v, w) in offsets.windows(2).enumerate() {
            let own = &columns[w[0] as usize..w[1] as usize];
            for c in own {
                postings[*c as usize].push(v as u32);
            }
            norms.push(
                own.iter()
                    .map(|c| idf[*c as usize].powi(2))
                    .sum::<f32>()
                    .sqrt(),
            );
        }
        let column_of = names
            .iter()
            .enumerate()
            .map(|(c, n)| (n.clone(), c as u32))
            .collect();
        Ok(Self {
            names,
            idf,
            offsets,
            columns,
            column_of,
            postings,
            norms,
        })
    }

    pub fn voters(&self) -> usize {
        self.norms.len()
    }

    /// Cosine similarity of `query`'s weighted names with every voter's; `None` when none of
    /// its names is a voter's (it has nothing to compare by).
    pub fn similarities(&self, query: &[String]) -> Option<Vec<f32>> {
        let mut known: Vec<u32> = query
            .iter()
            .filter_map(|n| self.column_of.get(n).copied())
            .collect();
        known.sort_unstable();
        known.dedup();
        let q_norm = known
            .iter()
            .map(|c| self.idf[*c as usize].powi(2))
            .sum::<f32>()
            .sqrt();
        if q_norm <= 0.0 {
            return None;
        }
        let mut sims = vec![0f32; self.voters()];
        for c in known {
            let w = self.idf[c as usize].powi(2) / q_norm;
            for v in &self.postings[c as usize] {
                sims[*v as usize] += w / self.norms[*v as usize];
            }
        }
        Some(sims)
    }
}

/// The credits vote of the train and validation movies of `prepared` with genres, on the
/// bags' folds.
pub fn build(
    prepared: &Prepared,
    (seed, n_folds): (u64, usize),
    config: CreditNeighboursConfig,
) -> Result<NeighbourVote> {
    check_credits(prepared)?;
    let voters = voters(prepared);
    let credits: Vec<Vec<String>> = voters.iter().map(|s| s.credits.clone()).collect();
    NeighbourVote::from_credits(
        (VoteSpace::Credits, config.settings(), n_folds),
        CreditIndex::fit(&credits),
        voters.iter().map(|s| s.genres.clone()).collect(),
        voters
            .iter()
            .map(|s| fold_of(seed, &s.id, n_folds) as u32)
            .collect(),
    )
    .with_context(|| prepared.dir.display().to_string())
}

fn voters(prepared: &Prepared) -> Vec<&EncodedSample> {
    prepared
        .samples
        .iter()
        .filter(|s| s.split != Split::Test && s.genres_present)
        .collect()
}

/// Refuses prepared data whose labelled movies carry no credits: a folder prepared before
/// cinefuse recorded them (or data without directors, cast and set features).
pub fn check_credits(prepared: &Prepared) -> Result<()> {
    if voters(prepared).iter().all(|s| s.credits.is_empty()) {
        bail!(
            "{}: no labelled movie carries credits (directors, cast or a declared set feature) \
             for train.credit_neighbours; a folder prepared before cinefuse recorded them needs \
             `cinefuse prepare` again (nothing else in it changes), or turn the vote off with \
             `--set train.credit_neighbours.enabled=false`",
            prepared.dir.display()
        );
    }
    Ok(())
}

/// The credits of each movie `ids` of `prepared`.
pub(crate) fn queries<'a>(prepared: &'a Prepared, ids: &[String]) -> Result<Vec<&'a [String]>> {
    Ok(crate::plot_neighbours::sample_indices(prepared, ids)?
        .into_iter()
        .map(|i| prepared.samples[i].credits.as_slice())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(raw: &[&[&str]]) -> Vec<Vec<String>> {
        raw.iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn a_rare_shared_name_weighs_more_than_a_common_one() {
        let index = CreditIndex::fit(&lists(&[
            &["cast:a", "director:x"],
            &["cast:a", "director:y"],
            &["cast:a", "cast:b"],
            &["cast:b"],
        ]));
        // "cast:a" is on three voters, "director:x" on one.
        let by_director = index.similarities(&lists(&[&["director:x"]])[0]).unwrap();
        let by_actor = index.similarities(&lists(&[&["cast:a"]])[0]).unwrap();
        assert!(by_director[0] > by_actor[0]);
        assert_eq!(by_director[1], 0.0);
        // A voter's similarity with its own names is 1.
        let own = index
            .similarities(&lists(&[&["director:x", "cast:a"]])[0])
            .unwrap();
        assert!((own[0] - 1.0).abs() < 1e-6, "{own:?}");
    }

    #[test]
    fn unknown_names_compare_by_nothing() {
        let index = CreditIndex::fit(&lists(&[&["cast:a"], &["cast:b"]]));
        assert_eq!(index.similarities(&lists(&[&["cast:z"]])[0]), None);
        assert_eq!(index.similarities(&[]), None);
    }

    #[test]
    fn stored_tables_that_disagree_are_refused() {
        let i = CreditIndex::fit(&lists(&[&["cast:a", "cast:b"], &["cast:b"]]));
        let parts = |columns: Vec<u32>| {
            CreditIndex::from_parts(i.names.clone(), i.idf.clone(), i.offsets.clone(), columns)
        };
        assert_eq!(parts(i.columns.clone()).unwrap(), i);
        assert!(parts(vec![0, 1, 7]).is_err());
        assert!(parts(vec![0, 1]).is_err());
    }
}
