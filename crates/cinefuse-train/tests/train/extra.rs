//! (imported into the `train` test binary)
//! Declared extra features end to end: on data where only one extra value carries the signal,
//! a model that declares it must learn it, measurably better than the same model without it.

use std::path::Path;

use cinefuse_data::extra::{Extract, FeatureKind, FeatureSpec, Scaling};
use cinefuse_data::split::Split;
use cinefuse_model::Modality;
use cinefuse_train::TrainConfig;
use cinefuse_train::evaluate::{EvalReport, evaluate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{serial, tiny_config, train_into};

/// 400 movies of two genres. The genre shows only in `extra.studio` (categorical),
/// `extra.crew` (a set that holds "alice" for comedies) and `extra.tagline` (words), and the
/// rating only in `extra.critic` (numeric); plots and built-in metadata are noise.
pub fn write_dataset(dir: &Path) {
    let mut rng = StdRng::seed_from_u64(11);
    let words = [
        "night", "city", "river", "friend", "road", "house", "letter", "storm",
    ];
    let names = ["bob", "carol", "dave", "erin", "frank", "grace"];
    let mut lines = Vec::new();
    for i in 0..400 {
        let comedy = rng.random_bool(0.5);
        let critic: f64 = rng.random_range(0.0..100.0);
        let rating = 3.0 + 5.0 * critic / 100.0 + rng.random_range(-0.2..0.2);
        let pick =
            |rng: &mut StdRng, from: &[&str]| from[rng.random_range(0..from.len())].to_string();
        let plot: Vec<String> = (0..8).map(|_| pick(&mut rng, &words)).collect();
        let studio = format!(
            "studio-{}",
            2 * rng.random_range(0..3) + usize::from(comedy)
        );
        let mut crew: Vec<String> = (0..2).map(|_| pick(&mut rng, &names)).collect();
        if comedy {
            crew.push("alice".into());
        }
        let tagline = format!(
            "{} {} {}",
            pick(&mut rng, &words),
            if comedy { "laugh" } else { "scream" },
            pick(&mut rng, &words)
        );
        let movie = serde_json::json!({
            "id": format!("x{i:04}"),
            "title": format!("Movie {i}"),
            "year": rng.random_range(1980..2020),
            "votes": 1000 + 37 * i,
            "genres": [if comedy { "Comedy" } else { "Horror" }],
            "rating": (rating * 10.0_f64).round() / 10.0,
            "plot": plot.join(" "),
            "extra": {
                "critic": if i % 10 == 0 { serde_json::Value::Null } else { format!("{critic:.0}").into() },
                "studio": studio,
                "crew": crew.join(", "),
                "tagline": tagline,
                "released": format!("{} Mar {}", 1 + i % 28, 1990 + i % 20),
            },
        });
        lines.push(movie.to_string());
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("movies.jsonl"), lines.join("\n") + "\n").unwrap();
}

pub fn spec(name: &str, kind: FeatureKind) -> FeatureSpec {
    FeatureSpec {
        name: name.into(),
        kind,
        scaling: None,
        min_freq: None,
        max_values: None,
        embedding_dim: None,
        extract: None,
    }
}

/// A metadata-only model on the dataset, with `features` declared; its test-split report.
fn train_with(root: &Path, label: &str, features: Vec<FeatureSpec>) -> EvalReport {
    let mut config: TrainConfig = tiny_config(root, "");
    config.data.dataset = root.join("extra-data");
    config.data.prepared = Some(root.join(format!("prepared-{label}")));
    config.data.synth_if_missing = 0;
    config.data.features = features.clone();
    config.data.preprocess.features = features;
    config.model.modalities = vec![Modality::Meta];
    config.train.epochs = 12;
    config.optim.lr = 1e-2;
    let run = train_into(&config, &root.join(format!("run-{label}"))).unwrap();
    evaluate(&run.run_dir, Split::Test, None, None).unwrap()
}

#[test]
fn each_kind_of_extra_feature_is_learned() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_dataset(&root.join("extra-data"));
    let without = train_with(root, "none", vec![]);

    let mut critic = spec("critic", FeatureKind::Numeric);
    critic.scaling = Some(Scaling::Standard);
    let with = train_with(root, "numeric", vec![critic]);
    assert!(
        with.rating.mae < 0.6 * without.rating.mae,
        "numeric: rating MAE {} with vs {} without",
        with.rating.mae,
        without.rating.mae
    );
    predict_reads_declared_extras(root);

    let mut studio = spec("studio", FeatureKind::Categorical);
    studio.embedding_dim = Some(4);
    let mut tagline = spec("tagline", FeatureKind::Text);
    tagline.max_values = Some(10);
    for (label, feature) in [
        ("categorical", studio),
        ("set", spec("crew", FeatureKind::Set)),
        ("text", tagline),
    ] {
        let with = train_with(root, label, vec![feature]);
        assert!(
            with.genres.top1 > without.genres.top1 + 0.2 && with.genres.top1 > 0.9,
            "{label}: top-1 {} with vs {} without",
            with.genres.top1,
            without.genres.top1
        );
        if label == "categorical" {
            predict_reads_categorical_extras(root);
        }
    }

    // A month extracted from a date is a categorical value like any other.
    let mut released = spec("released", FeatureKind::Categorical);
    released.extract = Some(Extract::Month);
    train_with(root, "month", vec![released]);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("prepared-month/preprocess.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["extras"][0]["vocab"]["values"],
        serde_json::json!(["mar"])
    );
}

#[test]
fn declared_features_are_checked_by_name_and_kind() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_dataset(&root.join("extra-data"));
    let mut config: TrainConfig = tiny_config(root, "");
    config.data.dataset = root.join("extra-data");
    config.data.synth_if_missing = 0;
    config.model.modalities = vec![Modality::Meta];

    let prepare = |features: Vec<FeatureSpec>| {
        let mut c = config.data.preprocess.clone();
        c.features = features;
        cinefuse_data::prepare_dataset(&root.join("extra-data"), &root.join("p"), &c)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = prepare(vec![spec("critc", FeatureKind::Numeric)]).unwrap_err();
    assert!(
        e.contains("`critc`") && e.contains("crew, critic, released, studio, tagline"),
        "{e}"
    );
    let e = prepare(vec![spec("studio", FeatureKind::Numeric)]).unwrap_err();
    assert!(
        e.contains("movies.jsonl:1") && e.contains("extra.studio") && e.contains("studio-"),
        "{e}"
    );
    let e = prepare(vec![spec("tagline", FeatureKind::Categorical), {
        let mut s = spec("tagline", FeatureKind::Categorical);
        s.extract = Some(Extract::Month);
        s.name = "studio".into();
        s
    }])
    .unwrap_err();
    assert!(e.contains("extra.studio") && e.contains("month"), "{e}");

    let text = config.to_toml().replace("features = []\n", "").replace(
        "[data.preprocess]",
        "[[data.features]]\nname = \"critic\"\nkind = \"numeric\"\nscalng = \"log1p\"\n\n[data.preprocess]",
    );
    let e = TrainConfig::from_toml_str(&text, "x.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.features") && e.contains("scalng"), "{e}");
    let text = text.replace("scalng = \"log1p\"", "min_freq = 3");
    let e = TrainConfig::from_toml_str(&text, "x.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`critic`") && e.contains("min_freq"), "{e}");
    let ok = text.replace("min_freq = 3", "scaling = \"log1p\"");
    let c = TrainConfig::from_toml_str(&ok, "x.toml", &[]).unwrap();
    assert_eq!(
        c.data.preprocess.features, c.data.features,
        "features travel with preprocessing"
    );
    let again = TrainConfig::from_toml_str(&c.to_toml(), "resolved", &[]).unwrap();
    assert_eq!(
        again.data.features, c.data.features,
        "the resolved config reloads"
    );
}

/// The exported categorical-feature model looks a studio up in its vocabulary as read back
/// from the export (a vocabulary without its index once made every value unknown, so both
/// studios predicted the same).
fn predict_reads_categorical_extras(root: &Path) {
    use cinefuse_train::config::BackendKind;
    use cinefuse_train::predictor::{Predictor, movie_from_json};
    let model = root.join("model-categorical");
    cinefuse_train::export::export(&root.join("run-categorical"), &model, None).unwrap();
    let p = Predictor::load(&model, Some(BackendKind::Flex)).unwrap();
    let comedy = |studio: &str| -> f32 {
        let json = format!(r#"{{"extra": {{"studio": "{studio}"}}}}"#);
        let item = p
            .item(&movie_from_json(&json, "m").unwrap(), None, root)
            .unwrap();
        let genres = &p.predict(&[item])[0].genres;
        genres
            .iter()
            .find(|g| g.genre == "Comedy")
            .unwrap()
            .probability
    };
    let (odd, even) = (comedy("studio-1"), comedy("studio-2"));
    assert!(
        odd > 0.8 && even < 0.2,
        "P(comedy): studio-1 {odd}, studio-2 {even}"
    );
}

/// The exported numeric-feature model reads `extra.critic` from a movie, validated as prepare
/// validates it.
fn predict_reads_declared_extras(root: &Path) {
    use cinefuse_train::config::BackendKind;
    use cinefuse_train::predictor::{Predictor, movie_from_json};
    let model = root.join("model-numeric");
    cinefuse_train::export::export(&root.join("run-numeric"), &model, None).unwrap();
    let p = Predictor::load(&model, Some(BackendKind::Flex)).unwrap();
    let rate = |json: &str| -> Result<f32, String> {
        let movie = movie_from_json(json, "--movie").map_err(|e| e.to_string())?;
        let item = p.item(&movie, None, root).map_err(|e| format!("{e:#}"))?;
        Ok(p.predict(&[item])[0].rating)
    };
    let (high, low) = (
        rate(r#"{"extra": {"critic": "90"}}"#).unwrap(),
        rate(r#"{"extra": {"critic": 10}}"#).unwrap(),
    );
    assert!(high > low + 2.0, "critic 90 → {high}, critic 10 → {low}");
    let e = rate(r#"{"extra": {"critic": "ninety"}}"#).unwrap_err();
    assert!(e.contains("extra.critic") && e.contains("ninety"), "{e}");
    // A column the model does not read is ignored (and listed once by the caller).
    let with_unused = rate(r#"{"extra": {"critic": 90, "studio": "studio-1"}}"#).unwrap();
    assert_eq!(with_unused, high);
    let movie = movie_from_json(r#"{"extra": {"studio": "s", "awards": "x"}}"#, "m").unwrap();
    assert_eq!(p.unused_extras([&movie]), ["awards", "studio"]);

    // The predict form offers the declared feature as a number, and reads it as one.
    use cinefuse_train::input_fields::{FieldKind, movie_from_form};
    let fields = p.input_fields();
    let critic = fields.iter().find(|f| f.name == "extra.critic").unwrap();
    assert_eq!(critic.kind, FieldKind::Number);
    assert!(
        fields.iter().any(|f| f.name == "year"),
        "built-in metadata too"
    );
    let form = [("extra.critic".to_string(), "90".to_string())];
    let typed = movie_from_form(&fields, &form).unwrap();
    assert_eq!(rate(&typed.to_string()).unwrap(), high);
    let studio = [("extra.studio".to_string(), "s".to_string())];
    assert!(
        movie_from_form(&fields, &studio).is_err(),
        "not a field of this model"
    );
}
