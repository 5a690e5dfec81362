//! The genre-prompt space of a neighbour vote (`neighbour_vote.rs`): a movie's plot against
//! short sentences that describe each genre ("A western movie.", "This movie is a western
//! about cowboys, outlaws and a sheriff on the frontier."), both embedded by the same frozen
//! plot encoder. The voters are the prompts, each labelled with its one genre, so the vote is a
//! zero-shot classifier: softmax(similarity / temperature) over the prompts, summed per
//! genre. It brings what the checkpoint knows about the genre words to the genres with few
//! labelled movies, where a head learns little; every member of a bag sees every prompt
//! (no prompt belongs to a fold). Out of fold, stacked with the bags and the other three
//! votes, it raised macro-F1 by 0.002–0.011 on four seeds (docs/RESULTS.md, "Genre prompts").

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cinefuse_data::Prepared;
use serde::{Deserialize, Serialize};

use crate::evaluate::LoadedRun;
use crate::neighbour_vote::{
    NeighbourVote, VoteSettings, VoteSpace, Voters, default_k, default_prior, default_temperature,
    enabled,
};

pub const GENRE_PROMPTS_FILE: &str = "genre_prompts.safetensors";

/// `[train.genre_prompts]`, `ensemble --genre-prompts`: the shipped config sets k above the
/// number of prompts, temperature 0.02 and prior 0 (the probe's settings). The defaults are a
/// neighbour vote's (`neighbour_vote.rs`), at temperature 0.02.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenrePromptsConfig {
    /// Prompts per vote (above their number: every prompt votes).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Softmax temperature on the prompts' cosine similarity.
    #[serde(default = "default_temperature::<20>")]
    pub temperature: f32,
    /// Pseudo-prompts voting the genres alike.
    #[serde(default = "default_prior")]
    pub prior: f32,
    /// `false` turns a config's vote off (`--set train.genre_prompts.enabled=false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Your own sentences for a genre, in place of the built-in ones
    /// (`[train.genre_prompts.prompts]`, `Film-Noir = ["A film noir.", …]`): for a genre set
    /// other than IMDb's, or a genre the built-in table only names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, Vec<String>>,
}

impl Default for GenrePromptsConfig {
    fn default() -> Self {
        Self {
            k: default_k(),
            temperature: default_temperature::<20>(),
            prior: default_prior(),
            enabled: enabled(),
            prompts: BTreeMap::new(),
        }
    }
}

/// Bounds on your own prompts: a vote's sentences, not a corpus.
const MAX_GENRES: usize = 500;
const MAX_PROMPTS_PER_GENRE: usize = 50;
const MAX_PROMPT_BYTES: usize = 1000;

impl GenrePromptsConfig {
    pub fn settings(&self) -> VoteSettings {
        VoteSettings {
            k: self.k,
            temperature: self.temperature,
            prior: self.prior,
        }
    }

    /// The first bad setting, named by its key (`prompts.GENRE` for a genre's sentences).
    pub fn validate(&self) -> Result<(), String> {
        self.settings().validate()?;
        if self.prompts.len() > MAX_GENRES {
            return Err(format!(
                "prompts: at most {MAX_GENRES} genres, got {}",
                self.prompts.len()
            ));
        }
        let names: Vec<&String> = self.prompts.keys().collect();
        for (i, a) in names.iter().enumerate() {
            if let Some(b) = names[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)) {
                return Err(format!("prompts: `{a}` and `{b}` name the same genre"));
            }
        }
        self.prompts
            .iter()
            .try_for_each(|(genre, sentences)| check_sentences(genre, sentences))
    }
}

/// One genre's own sentences: a name, 1 to 50 sentences, none empty or overlong.
fn check_sentences(genre: &str, sentences: &[String]) -> Result<(), String> {
    let key = format!("prompts.{genre}");
    if genre.trim().is_empty() {
        return Err("prompts: a genre's name is empty".into());
    }
    if !(1..=MAX_PROMPTS_PER_GENRE).contains(&sentences.len()) {
        return Err(format!(
            "{key} must hold 1 to {MAX_PROMPTS_PER_GENRE} sentences, got {}",
            sentences.len()
        ));
    }
    for (i, s) in sentences.iter().enumerate() {
        if s.trim().is_empty() {
            return Err(format!("{key}: sentence {} is empty", i + 1));
        }
        if s.len() > MAX_PROMPT_BYTES {
            return Err(format!(
                "{key}: sentence {} is {} bytes, above {MAX_PROMPT_BYTES}",
                i + 1,
                s.len()
            ));
        }
    }
    Ok(())
}

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

/// The prompts of one genre: the config's own sentences for it when it has some (its name
/// matched regardless of case); else its name in a sentence, then, for a genre in `ABOUT`,
/// what it is and what it is about.
pub fn prompts_for(genre: &str, own: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    if let Some((_, sentences)) = own.iter().find(|(g, _)| g.eq_ignore_ascii_case(genre)) {
        return sentences.iter().map(|s| s.trim().to_string()).collect();
    }
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
    config: &GenrePromptsConfig,
) -> Result<NeighbourVote> {
    let prepared = &lead.prepared;
    let dir = plot_backbone_dir(lead)?;
    let genres = prepared.preprocessor.genre_names();
    check_own_genres(&config.prompts, genres)?;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (g, name) in genres.iter().enumerate() {
        for p in prompts_for(name, &config.prompts) {
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

/// `ensemble --prompts FILE`: a TOML file of genre = [sentences], as the config's
/// `[train.genre_prompts.prompts]` table (bounded, a regular file, named in every error).
pub fn read_prompts_file(path: &std::path::Path) -> Result<BTreeMap<String, Vec<String>>> {
    use cinefuse_data::user_file::{MAX_CONFIG_BYTES, read_text_capped};
    let text = read_text_capped(path, MAX_CONFIG_BYTES)?;
    toml::from_str(&text).with_context(|| {
        format!(
            "{}: not a table of genre = [\"sentence\", …]",
            path.display()
        )
    })
}

/// Every genre given its own sentences must be one the bags predict: a misspelt name would
/// otherwise leave the genre on its built-in prompts without a word.
fn check_own_genres(own: &BTreeMap<String, Vec<String>>, genres: &[String]) -> Result<()> {
    for name in own.keys() {
        if !genres.iter().any(|g| g.eq_ignore_ascii_case(name)) {
            bail!(
                "genre prompts: `{name}` is not one of the bags' genres ({})",
                genres.join(", ")
            );
        }
    }
    Ok(())
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
        let none = BTreeMap::new();
        let w = prompts_for("Western", &none);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], "A western movie.");
        assert!(w[1].starts_with("This movie is a western about cowboys"));
        assert!(w[2].starts_with("A film about cowboys"));
        assert_eq!(prompts_for("sci-fi", &none).len(), 3);
        assert_eq!(prompts_for("Film-Noir", &none), vec!["A film-noir movie."]);
    }

    fn own(genre: &str, sentences: &[&str]) -> BTreeMap<String, Vec<String>> {
        let s = sentences.iter().map(|s| s.to_string()).collect();
        BTreeMap::from([(genre.to_string(), s)])
    }

    #[test]
    fn own_sentences_replace_a_genres_built_in_ones_and_leave_the_rest() {
        let noir = own(
            "film-noir",
            &[" A film noir. ", "A cynical detective and a femme fatale."],
        );
        assert_eq!(
            prompts_for("Film-Noir", &noir),
            vec!["A film noir.", "A cynical detective and a femme fatale."]
        );
        assert_eq!(
            prompts_for("Western", &noir).len(),
            3,
            "the others keep theirs"
        );
        let western = own("Western", &["A horse opera."]);
        assert_eq!(prompts_for("Western", &western), vec!["A horse opera."]);
        let genres = ["Drama".to_string(), "Film-Noir".to_string()];
        assert!(check_own_genres(&noir, &genres).is_ok());
        let e = check_own_genres(&own("Noir", &["x"]), &genres).unwrap_err();
        assert!(
            e.to_string()
                .contains("`Noir` is not one of the bags' genres (Drama, Film-Noir)"),
            "{e}"
        );
    }

    #[test]
    fn own_sentences_are_checked_by_key() {
        let with = |prompts| GenrePromptsConfig {
            prompts,
            ..GenrePromptsConfig::default()
        };
        assert!(with(own("Drama", &["A drama."])).validate().is_ok());
        let cases = [
            (
                own("Drama", &[]),
                "prompts.Drama must hold 1 to 50 sentences, got 0",
            ),
            (
                own("Drama", &["A drama.", "  "]),
                "prompts.Drama: sentence 2 is empty",
            ),
            (own(" ", &["x"]), "prompts: a genre's name is empty"),
            (
                own("Drama", &[&"a".repeat(1001)]),
                "prompts.Drama: sentence 1 is 1001 bytes, above 1000",
            ),
        ];
        let mut twice = own("Drama", &["A drama."]);
        twice.insert("drama".into(), vec!["A sad story.".into()]);
        let twice = (twice, "prompts: `Drama` and `drama` name the same genre");
        for (prompts, says) in cases.into_iter().chain([twice]) {
            assert_eq!(with(prompts).validate().unwrap_err(), says);
        }
        let bad_k = GenrePromptsConfig {
            k: 0,
            ..GenrePromptsConfig::default()
        };
        assert_eq!(
            bad_k.validate().unwrap_err(),
            "k must be in 1..=10000, got 0"
        );
    }
}
