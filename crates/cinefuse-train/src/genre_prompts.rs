//! The genre-prompt space of a neighbour vote (`neighbour_vote.rs`): a movie's plot against
//! short sentences that describe each genre ("A western movie.", "This movie is a western
//! about cowboys, outlaws and a sheriff on the frontier."), both embedded by the same frozen
//! MiniLM. The voters are the prompts, each labelled with its one genre, so the vote is a
//! zero-shot classifier: softmax(similarity / temperature) over the prompts, summed per
//! genre. It brings what the checkpoint knows about the genre words to the genres with few
//! labelled movies, where a head learns little; every member of a bag sees every prompt
//! (no prompt belongs to a fold). Out of fold, stacked with the bags and the other three
//! votes, it raised macro-F1 by 0.002–0.011 on four seeds (docs/RESULTS.md, "Genre prompts").

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cinefuse_data::Prepared;

use crate::evaluate::LoadedRun;
use crate::neighbour_vote::{NeighbourVote, NeighboursConfig, VoteSpace, Voters};

pub const GENRE_PROMPTS_FILE: &str = "genre_prompts.safetensors";

/// `[train.genre_prompts]`, `ensemble --genre-prompts`: the shipped config sets k above the
/// number of prompts, temperature 0.02 and prior 0 (the probe's settings).
pub type GenrePromptsConfig = NeighboursConfig<20>;

/// What each IMDb genre is about, in a few words: the prompts' descriptions. A genre not
/// listed gets its name alone ("A {genre} movie.").
const ABOUT: &[(&str, &str, &str)] = &[
    (
        "Action",
        "an action movie",
        "fights, chases, explosions and shootouts",
    ),
    (
        "Adventure",
        "an adventure",
        "a journey or quest to faraway lands",
    ),
    (
        "Animation",
        "an animated film",
        "cartoon characters and talking animals",
    ),
    (
        "Biography",
        "a biography",
        "the true story of a real person's life",
    ),
    ("Comedy", "a comedy", "jokes, laughs and funny situations"),
    (
        "Crime",
        "a crime story",
        "gangsters, criminals, police and detectives",
    ),
    (
        "Documentary",
        "a documentary",
        "real people and facts, filmed as they are",
    ),
    (
        "Drama",
        "a drama",
        "people, relationships and emotional struggles",
    ),
    (
        "Family",
        "a family film",
        "children and parents, for kids of all ages",
    ),
    (
        "Fantasy",
        "a fantasy",
        "magic, wizards, dragons and enchanted worlds",
    ),
    (
        "History",
        "a historical film",
        "real events, kings and empires of a past era",
    ),
    (
        "Horror",
        "a horror film",
        "monsters, ghosts, demons and terrifying deaths",
    ),
    (
        "Music",
        "a music film",
        "a band, a singer, musicians and concerts",
    ),
    (
        "Musical",
        "a musical",
        "characters who sing and dance songs on stage",
    ),
    (
        "Mystery",
        "a mystery",
        "solving a puzzling murder and uncovering secrets",
    ),
    ("Romance", "a romance", "two people falling in love"),
    (
        "Sci-Fi",
        "science fiction",
        "aliens, spaceships, robots and future technology",
    ),
    (
        "Sport",
        "a sports film",
        "a team, an athlete, a coach and a championship",
    ),
    (
        "Thriller",
        "a thriller",
        "suspense, danger, a conspiracy and a killer",
    ),
    ("War", "a war film", "soldiers, battles and the army at war"),
    (
        "Western",
        "a western",
        "cowboys, gunslingers, outlaws and a sheriff on the frontier",
    ),
];

/// The prompts of one genre: its name in a sentence, then, for a genre in `ABOUT`, what it is
/// and what it is about.
pub fn prompts_for(genre: &str) -> Vec<String> {
    let mut out = vec![format!("A {} movie.", genre.to_lowercase())];
    if let Some((_, what, about)) = ABOUT.iter().find(|(g, ..)| g.eq_ignore_ascii_case(genre)) {
        out.push(format!("This movie is {what} about {about}."));
        out.push(format!("A film about {about}."));
    }
    out
}

/// The genre-prompt vote of `lead`'s genres: every prompt embedded by the lead bag's frozen
/// plot backbone as a plot is (tokenized by the prepared data's tokenizer, the pooled
/// sentence embedding), centred on the prompts' mean.
pub fn build(
    lead: &LoadedRun,
    n_folds: usize,
    config: GenrePromptsConfig,
) -> Result<NeighbourVote> {
    let prepared = &lead.prepared;
    let dir = plot_backbone_dir(lead)?;
    let genres = prepared.preprocessor.genre_names();
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (g, name) in genres.iter().enumerate() {
        for p in prompts_for(name) {
            texts.push(p);
            let mut y = vec![0.0; genres.len()];
            y[g] = 1.0;
            labels.push(y);
        }
    }
    let rows = embed(dir, prepared, &texts, &lead.device)?;
    let voters = Voters {
        rows,
        labels,
        // No prompt belongs to a fold: every member sees them all.
        folds: vec![n_folds as u32; texts.len()],
    };
    NeighbourVote::from_voters(
        (VoteSpace::Prompts, config.settings(), n_folds),
        voters,
        false,
        Vec::new(),
    )
    .with_context(|| format!("the genre-prompt vote of {}", prepared.dir.display()))
}

/// The lead bag's frozen pretrained plot backbone, which the vote shares with the plot vote.
fn plot_backbone_dir(lead: &LoadedRun) -> Result<&std::path::Path> {
    let text = &lead.config.model.text;
    let cached = lead
        .prepared
        .features
        .as_ref()
        .is_some_and(|f| f.plot.is_some());
    match text.pretrained.as_deref() {
        Some(dir) if cached => Ok(dir),
        _ => bail!(
            "{}: the genre-prompt vote needs the first bag's cached plot features (a frozen \
             pretrained plot encoder, `model.text.kind = \"bert\"`)",
            lead.dir.display()
        ),
    }
}

/// The pooled sentence embedding of each text, as the plots' cached features begin.
fn embed(
    dir: &std::path::Path,
    prepared: &Prepared,
    texts: &[String],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let bert = crate::backbone_features::frozen_text_backbone(dir, device)?;
    let pre = &prepared.preprocessor;
    let max_len = pre.state.config.max_tokens;
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        let ids = cinefuse_data::tokenizer::encode_plot(&pre.tokenizer, text, max_len)?;
        let n = ids.len();
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let mask = Tensor::<2>::ones([1, n], device);
        let e: Vec<f32> = bert
            .forward(tokens, mask)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 tensor");
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_genre_gets_three_prompts_and_an_unknown_one_its_name() {
        let w = prompts_for("Western");
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], "A western movie.");
        assert!(w[1].starts_with("This movie is a western about cowboys"));
        assert!(w[2].starts_with("A film about cowboys"));
        assert_eq!(prompts_for("sci-fi").len(), 3);
        assert_eq!(prompts_for("Film-Noir"), vec!["A film-noir movie."]);
    }
}
