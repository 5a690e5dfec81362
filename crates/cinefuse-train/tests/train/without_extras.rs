//! (imported into the `train` test binary)
//! A movie given with its vote count and without any declared extra (a table without those
//! columns) is rated by the blend's trees that never saw the extras, with their own weights
//! and interval; a movie that lacks the critic score among other extras lacks it as a real
//! movie does, and keeps the blend's rating.

use std::path::Path;

use cinefuse_data::extra::{FeatureKind, Scaling};
use cinefuse_model::Modality;
use cinefuse_train::blend::{BlendExtras, blend};
use cinefuse_train::config::BackendKind;
use cinefuse_train::predictor::{MoviePrediction, Predictor, movie_from_json};
use cinefuse_train::rating_trees::RatingTreesConfig;

use super::extra::{spec, write_dataset};
use super::{serial, tiny_config, train_into};

const FLEX: Option<BackendKind> = Some(BackendKind::Flex);

/// A two-fold metadata bag that declares the critic score (numeric) and the studio
/// (categorical), blended with rating trees; the blend's folder.
fn blend_with_extras(root: &Path) -> std::path::PathBuf {
    write_dataset(&root.join("extra-data"));
    let mut config = tiny_config(root, "");
    config.data.dataset = root.join("extra-data");
    config.data.prepared = Some(root.join("prepared-extras"));
    config.data.synth_if_missing = 0;
    let mut critic = spec("critic", FeatureKind::Numeric);
    critic.scaling = Some(Scaling::Standard);
    let mut studio = spec("studio", FeatureKind::Categorical);
    studio.embedding_dim = Some(4);
    config.data.features = vec![critic, studio];
    config.data.preprocess.features = config.data.features.clone();
    config.model.modalities = vec![Modality::Meta];
    config.train.folds = 2;
    config.train.epochs = 2;
    let bag = root.join("bag");
    train_into(&config, &bag).unwrap();
    cinefuse_train::export::export(&bag, &root.join("bag-model"), FLEX).unwrap();
    let out = root.join("blend");
    let trees = RatingTreesConfig {
        iterations: 50,
        learning_rate: 0.1,
        max_leaves: 7,
        ..RatingTreesConfig::default()
    };
    let extras = BlendExtras {
        rating_trees: Some(trees),
        ..BlendExtras::default()
    };
    blend(&[bag], &out, FLEX, extras).unwrap();
    out
}

/// `predictor`'s predictions of the movies `json` (one JSON object each).
fn predict(predictor: &Predictor, root: &Path, json: &[&str]) -> Vec<MoviePrediction> {
    let items: Vec<_> = json
        .iter()
        .map(|j| {
            let movie = movie_from_json(j, "--movie").unwrap();
            predictor.item(&movie, None, root).unwrap()
        })
        .collect();
    predictor.predict(&items)
}

const BARE: &str =
    r#"{"id":"bare","plot":"night city road","year":2001,"votes":9000,"certificate":"R"}"#;
/// The same movie with a studio nobody knows: encoded as `BARE` (every training movie has a
/// studio, so a movie without one reads as an unknown one), but it gives an extra.
const TWIN: &str = r#"{"id":"twin","plot":"night city road","year":2001,"votes":9000,"certificate":"R","extra":{"studio":"studio-unheard"}}"#;
const VOTELESS: &str =
    r#"{"id":"voteless","plot":"night city road","year":2001,"certificate":"R"}"#;

#[test]
fn a_movie_given_without_any_extra_is_rated_by_trees_that_never_saw_them() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = blend_with_extras(root);
    let path = out.join("blend.json");
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let sets = &info["rating_without_votes"]["sets"];
    let fields: Vec<String> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fields"].to_string())
        .collect();
    let want = [
        r#"["votes"]"#,
        r#"["votes","extra.critic"]"#,
        r#"["extra.critic"]"#,
    ];
    assert_eq!(fields, want);

    let model = root.join("model");
    cinefuse_train::export::export(&out, &model, FLEX).unwrap();
    let p = Predictor::load(&model, FLEX).unwrap();
    let before = predict(&p, root, &[BARE, TWIN, VOTELESS]);
    assert_ne!(
        before[0].rating, before[1].rating,
        "the twin keeps the blend's rating"
    );
    // `predict` says why, with this blend's own errors; not for the twin.
    let handled = p.handled();
    let warn = |j: &str| {
        let movie = movie_from_json(j, "m").unwrap();
        cinefuse_train::input_warnings::input_warnings(&p.preprocessor, &movie, &handled).join("\n")
    };
    let set = &sets[2];
    let quoted = format!(
        "never saw extra.critic, mixed with the bags', with an interval of its own (out of fold \
         this model's ratings of movies without them were off by {:.2} on average, against {:.2} \
         with them)",
        set["out_of_fold_mae"].as_f64().unwrap(),
        set["blend_out_of_fold_mae"].as_f64().unwrap()
    );
    assert!(warn(BARE).contains(&quoted), "{}", warn(BARE));
    assert!(!warn(TWIN).contains("extra fields"), "{}", warn(TWIN));

    // Weigh the set's rating all on the bag: the bare movie then gets the bag's own rating
    // of it, the twin and the movie without votes (rated by the set without votes) move not.
    let set = &mut info["rating_without_votes"]["sets"][2];
    set["part_weights"] = serde_json::json!([1.0]);
    set["trees_weight"] = 0.0.into();
    set["plot_weight"] = 0.0.into();
    std::fs::write(&path, info.to_string()).unwrap();
    let tampered = root.join("model-tampered");
    cinefuse_train::export::export(&out, &tampered, FLEX).unwrap();
    let after = predict(
        &Predictor::load(&tampered, FLEX).unwrap(),
        root,
        &[BARE, TWIN, VOTELESS],
    );
    let bag = predict(
        &Predictor::load(&root.join("bag-model"), FLEX).unwrap(),
        root,
        &[BARE],
    );
    assert!((after[0].rating - bag[0].rating).abs() < 1e-5);
    assert_ne!(after[0].rating, before[0].rating);
    assert_eq!(after[1].rating, before[1].rating);
    assert_eq!(after[2].rating, before[2].rating);
    assert_eq!(after[1].rating_interval, before[1].rating_interval);
}
