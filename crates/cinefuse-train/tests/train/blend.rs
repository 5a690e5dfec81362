//! (imported into the `train` test binary)
//! Blends of bags with different configs (`cinefuse ensemble`): weights learned out of fold,
//! the blend in eval and in its export, and the bags a blend refuses.

use std::path::Path;

use cinefuse_data::split::Split;
use cinefuse_model::Modality;
use cinefuse_train::blend::{Blend, BlendExtras, BlendInfo, blend};
use cinefuse_train::config::BackendKind;
use cinefuse_train::evaluate::evaluate;
use cinefuse_train::interval::Calibration;
use cinefuse_train::predictions::Predictions;
use cinefuse_train::predictor::Predictor;
use cinefuse_train::rating_trees::{RatingTrees, RatingTreesConfig, TREES_FILE};
use cinefuse_train::voteless_rating::lacks_votes;

use super::{items_of, serial, tiny_config, train_into};

const FLEX: Option<BackendKind> = Some(BackendKind::Flex);

/// Two bags of different models (all modalities with a GMU; plot and metadata only, with
/// `loss.pos_weight`) on the same three folds.
fn two_bags(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut full = tiny_config(root, "");
    full.train.folds = 3;
    let mut words = full.clone();
    words.name = "tiny-words".into();
    words.model.modalities = vec![Modality::Text, Modality::Meta];
    // Only the second bag up-weights positives: each part takes its own logit shift out.
    words.loss.pos_weight = true;
    words.loss.pos_weight_max = 3.0;
    let (a, b) = (root.join("bag-full"), root.join("bag-words"));
    train_into(&full, &a).unwrap();
    train_into(&words, &b).unwrap();
    (a, b)
}

/// `scripts/check_paired_bootstrap.py` on an evaluated run (trained on `root`'s demo data):
/// the paired comparisons read what `eval` saved; then `scripts/check_bounded_io.py`, the
/// bounded reader every script uses. SKIPPED without a Python that has scikit-learn.
fn check_paired_bootstrap(run: &Path, root: &Path) {
    let Some(python) = super::python_with("sklearn") else {
        eprintln!(
            "SKIPPED paired_bootstrap.py: no Python with scikit-learn (scripts/setup_python.sh)"
        );
        return;
    };
    let script = crate::manifest_dir().join("../../scripts/check_paired_bootstrap.py");
    let (demo, prepared) = (root.join("demo"), root.join("prepared"));
    let args = [script.as_path(), run, &demo, &prepared];
    let out = super::run_python(&python, &args);
    assert!(String::from_utf8_lossy(&out).contains("paired bootstrap checked on"));
    // The threshold rules on the test split: the script's grid thresholds from the blend's
    // out-of-fold file must be the blend's own (it exits naming the run where they differ).
    let script = crate::manifest_dir().join("../../scripts/threshold_rules_test.py");
    let out = super::run_python(&python, &[script.as_path(), &demo, &prepared, run]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("(trained with grid pulled 0.25)"), "{text}");
    assert!(
        text.contains("mean of 1, half best F1 pulled 0.25: micro-F1 0."),
        "{text}"
    );
    let script = crate::manifest_dir().join("../../scripts/check_bounded_io.py");
    let out = super::run_python(&python, &[script.as_path()]);
    assert!(String::from_utf8_lossy(&out).contains("bounded reads checked"));
}

/// `scripts/oof_probes.py` on the bags' out-of-fold files: every combiner, the extra-member
/// probe and the rating probe report a score; so does `scripts/threshold_probe.py`. SKIPPED
/// without a Python that has scikit-learn.
fn probe_out_of_fold(root: &Path, bags: &[&Path]) {
    let repo = crate::manifest_dir().join("../..");
    let Some(python) = super::python_with("sklearn") else {
        eprintln!("SKIPPED oof_probes.py: no Python with scikit-learn (scripts/setup_python.sh)");
        return;
    };
    let script = repo.join("scripts/oof_probes.py");
    let (demo, prepared) = (root.join("demo"), root.join("prepared"));
    let mut args = vec![script.as_path(), &demo, &prepared];
    args.extend(bags);
    args.extend([Path::new("--linear-peer"), Path::new("--more-votes")]);
    let out = super::run_python(&python, &args);
    let text = String::from_utf8_lossy(&out);
    for row in [
        "greedy probability weights (shipped)",
        "logistic stacking per genre",
        "gradient boosting on the same folds, on all the peer's columns: 0.",
        "with the blend (weights",
        // Another kind of member: TF-IDF here (the tiny bags cache no plot embeddings).
        "TF-IDF logistic regression (C=10) alone",
        "+ the bags, greedy probability weights",
        "no cached plot features",
        "linear peer: no cached plot and poster features",
        "more votes: no cached plot and poster features",
    ] {
        assert!(text.contains(row), "{row}: {text}");
    }
    // The threshold probe: a score for every weight, both ways of tuning, for the grid's
    // thresholds and for half the best F1.
    let script = repo.join("scripts/threshold_probe.py");
    let mut args = vec![script.as_path(), Path::new("--half-best")];
    args.extend(bags);
    let text = String::from_utf8_lossy(&super::run_python(&python, &args)).to_string();
    for (row, times) in [
        ("tuned on four folds", 1),
        ("tuned on one fold", 1),
        ("\n  0.25  0.", 2),
        ("\n  half best F1, 0.25  0.", 2),
        ("half best F1", 10),
    ] {
        assert_eq!(text.matches(row).count(), times, "{row}: {text}");
    }
}

#[test]
fn a_blend_learns_weights_out_of_fold_and_its_export_predicts_the_same() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_bags(dir.path());
    let out = dir.path().join("blend");
    let info = blend(&[a.clone(), b.clone()], &out, FLEX, BlendExtras::default()).unwrap();
    for w in [&info.genre_weights, &info.rating_weights] {
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|x| *x >= 0.0));
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{w:?}");
    }
    let cal = &info.calibration;
    let bag_oof = cinefuse_train::bag::read_bag(&a)
        .unwrap()
        .calibration
        .unwrap();
    assert_eq!(cal.out_of_fold.movies, bag_oof.out_of_fold.movies);
    assert_eq!(cal.out_of_fold.interval_per_fold.len(), 3);
    // oof_predictions.csv: the bags' out-of-fold predictions, combined by the learnt weights.
    let rows = |dir: &Path| -> std::collections::HashMap<String, Vec<f64>> {
        let text = std::fs::read_to_string(dir.join(cinefuse_train::oof::OOF_FILE)).unwrap();
        let rows: std::collections::HashMap<_, _> = text
            .lines()
            .skip(1)
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                let numbers = [cells[2], cells[4]].map(|c| c.parse::<f64>().unwrap());
                (cells[0].to_string(), numbers.to_vec())
            })
            .collect();
        assert_eq!(rows.len(), bag_oof.out_of_fold.movies);
        rows
    };
    let (blended, in_a, in_b) = (rows(&out), rows(&a), rows(&b));
    let (gw, rw) = (&info.genre_weights, &info.rating_weights);
    for (id, v) in &blended {
        let mix = |w: &[f32], k: usize| w[0] as f64 * in_a[id][k] + w[1] as f64 * in_b[id][k];
        assert!((v[0] - mix(rw, 0)).abs() < 2e-4, "rating of {id}");
        assert!((v[1] - mix(gw, 1)).abs() < 2e-5, "first genre of {id}");
    }

    probe_out_of_fold(dir.path(), &[&a, &b]);

    // eval: the members' weighted combination, with the blend's own thresholds.
    let report = evaluate(&out, Split::Test, None, FLEX).unwrap();
    check_paired_bootstrap(&out, dir.path());
    let summary = report.bag.as_ref().unwrap();
    assert_eq!((summary.members, summary.blend.len()), (3, 2));
    let thresholds: Vec<f32> = report
        .genres
        .per_genre
        .iter()
        .map(|g| g.threshold)
        .collect();
    assert_eq!(thresholds, cal.thresholds);
    let blended = Blend::open(&out, FLEX).unwrap().unwrap();
    let own: Vec<_> = blended.parts.iter().map(|e| &e.lead().prepared).collect();
    let (mean, each) = blended.predict(&own, Some(Split::Test)).unwrap();
    let per_bag: Vec<_> = blended
        .parts
        .iter()
        .zip(&own)
        .map(|(e, p)| e.predict(p, Some(Split::Test)).0)
        .collect();
    for i in 0..mean.ids.len() {
        let expected = rw[0] * per_bag[0].rating[i] + rw[1] * per_bag[1].rating[i];
        assert!((mean.rating[i] - expected).abs() < 1e-4, "movie {i}");
        let g = mean.n_genres;
        let p = gw[0] * per_bag[0].probs[i * g] + gw[1] * per_bag[1].probs[i * g];
        assert!((mean.probs[i * g] - p).abs() < 1e-5, "movie {i}");
    }

    // The export: both bags whole, and the same predictions and intervals.
    let model = dir.path().join("model");
    cinefuse_train::export::export(&out, &model, FLEX).unwrap();
    let predictor = Predictor::load(&model, FLEX).unwrap();
    assert_eq!(predictor.manifest.parts.len(), 2);
    let card = std::fs::read_to_string(model.join("README.md")).unwrap();
    assert!(card.contains("a blend of 2 bags"), "{card}");
    assert!(
        card.contains("cinefuse ensemble --runs BAG-0,BAG-1"),
        "{card}"
    );
    assert!(model.join("part-1/config.toml").is_file());
    assert_eq!(predictor.manifest.thresholds, cal.thresholds);
    let items = items_of(&predictor, &dir.path().join("demo"), &mean.ids);
    super::bag::assert_predicts_the_ensemble(
        &predictor,
        &items,
        &mean,
        &each,
        cal.interval.as_ref(),
    );

    rating_trees_join_the_blend(dir.path(), &a, &b);
}

/// How many of the rated movies of `mean` (members `each`) the interval's scales for movies
/// given without their plot or poster widen: `predict` records which inputs each came without.
fn widened_movies(interval: &Calibration, mean: &Predictions, each: &[Predictions]) -> usize {
    let width = |c: Option<[f32; 2]>| c.map_or(0.0, |[lo, hi]| hi - lo);
    (0..mean.ids.len())
        .filter(|i| mean.rating_present[*i])
        .filter(|i| {
            let ratings: Vec<f32> = each.iter().map(|m| m.rating[*i]).collect();
            let (key, without) = (mean.votes[*i], mean.given_without_of(*i));
            width(interval.interval_given(&ratings, key, without))
                > width(interval.interval(&ratings, key)) + 1e-6
        })
        .count()
}

/// The same two bags blended with rating trees: the trees' out-of-fold ratings are forest k's
/// on fold k, they take no genre weight, and eval, the export and `Predictor` agree on a
/// blend whose rating leans on them.
fn with_trees(cfg: RatingTreesConfig) -> BlendExtras {
    BlendExtras {
        rating_trees: Some(cfg),
        ..BlendExtras::default()
    }
}

fn rating_trees_join_the_blend(root: &Path, a: &Path, b: &Path) {
    let out = root.join("blend-trees");
    let cfg = RatingTreesConfig {
        iterations: 50,
        learning_rate: 0.1,
        max_leaves: 7,
        l2: 2.0,
        ..RatingTreesConfig::default()
    };
    genre_aware_trees_join_the_blend(root, a, b, cfg);
    // Lean on the trees (as a blend on real data does) so that every check below sees them.
    let (info, blended) = blend_leaning_on_trees((a, b), &out, cfg, vec![0.25, 0.25, 0.5]);
    assert_eq!(info.genre_weights.len(), 3);
    assert_eq!(info.genre_weights[2], 0.0, "the trees predict no genres");
    assert!((info.rating_weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(out.join(TREES_FILE).is_file());
    let trees = blended.trees.as_ref().unwrap();
    let own: Vec<_> = blended.parts.iter().map(|e| &e.lead().prepared).collect();
    let (mean, each) = blended.predict(&own, Some(Split::Test)).unwrap();
    let (bag_a, bag_b) = (
        blended.parts[0].predict(own[0], Some(Split::Test)).1,
        blended.parts[1].predict(own[1], Some(Split::Test)).1,
    );
    // A movie without a vote count (the demo data lacks a few) is rated by the trees that
    // never saw one, mixed with the bags by the weights learnt for such movies.
    let voteless = blended.voteless.as_ref().unwrap();
    let mix = &blended.info.rating_without_votes.as_ref().unwrap().sets[0];
    assert_eq!(mix.columns, [2]);
    assert_eq!(mix.plot_weight, 0.0, "no content rating to mix in");
    let lacking = lacking_votes(own[0], &each[0].ids);
    assert!(lacking.contains(&true) && lacking.contains(&false));
    for (k, member) in each.iter().enumerate() {
        let forest = trees.predict_member(k, own[0], &member.ids).unwrap();
        let reduced = voteless.sets[0]
            .predict_member(k, own[0], &member.ids)
            .unwrap();
        for (i, tree) in forest.iter().enumerate() {
            let bags = [bag_a[k].rating[i], bag_b[k].rating[i]];
            let want = match lacking[i] {
                false => 0.25 * bags[0] + 0.25 * bags[1] + 0.5 * tree,
                true => {
                    let parts: f32 = mix.part_weights.iter().zip(bags).map(|(w, r)| w * r).sum();
                    parts + mix.trees_weight * reduced[i]
                }
            };
            assert!(
                (member.rating[i] - want).abs() < 1e-4,
                "member {k}, movie {i}"
            );
        }
        assert_ne!(
            forest,
            trees
                .predict_member((k + 1) % 3, own[0], &member.ids)
                .unwrap()
        );
    }
    let report = evaluate(&out, Split::Test, None, FLEX).unwrap();
    assert!((report.rating.mae - mean.rating_metrics().mae).abs() < 1e-6);

    let model = root.join("model-trees");
    cinefuse_train::export::export(&out, &model, FLEX).unwrap();
    let predictor = Predictor::load(&model, FLEX).unwrap();
    let t = predictor.manifest.rating_trees.as_ref().unwrap();
    assert_eq!((t.file.as_str(), t.rating_weight), (TREES_FILE, 0.5));
    let card = std::fs::read_to_string(model.join("README.md")).unwrap();
    let flags = "--rating-trees --tree-iterations 50 --tree-learning-rate 0.1 --tree-leaves 7 \
                 --tree-l2 2";
    assert!(card.contains(flags), "{card}");
    let items = items_of(&predictor, &root.join("demo"), &mean.ids);
    let interval = blended.info.calibration.interval.as_ref();
    super::bag::assert_predicts_the_ensemble(&predictor, &items, &mean, &each, interval);

    // A forest that points a child back at its parent is refused when the export loads.
    let mut bad = RatingTrees::load(&model.join(TREES_FILE)).unwrap();
    let inner = bad.members[0].is_leaf.iter().position(|l| *l == 0);
    if let Some(inner) = inner {
        bad.members[0].right[inner] = inner as i32;
        std::fs::write(model.join(TREES_FILE), bad.to_bytes().unwrap()).unwrap();
        let e = Predictor::load(&model, FLEX).err().expect("refused");
        assert!(format!("{e:#}").contains("not after it"), "{e:#}");
    }
}

/// The blend of `a` and `b` with trees `cfg` learnt into `out` (its info as learnt), then
/// opened with its rating weights replaced by `rating_weights`.
fn blend_leaning_on_trees(
    (a, b): (&Path, &Path),
    out: &Path,
    cfg: RatingTreesConfig,
    rating_weights: Vec<f32>,
) -> (BlendInfo, Blend) {
    let info = blend(
        &[a.to_path_buf(), b.to_path_buf()],
        out,
        FLEX,
        with_trees(cfg),
    )
    .unwrap();
    let mut tampered = info.clone();
    tampered.rating_weights = rating_weights;
    cinefuse_train::run_dir::write_json(&out.join("blend.json"), &tampered).unwrap();
    (info, Blend::open(out, FLEX).unwrap().unwrap())
}

/// Trees that read the first bag's genre probabilities too: forest k rates each movie from its
/// metadata and member k's probabilities, so eval, the export and `Predictor` still agree, and
/// the same rows with other probabilities get other ratings.
fn genre_aware_trees_join_the_blend(root: &Path, a: &Path, b: &Path, cfg: RatingTreesConfig) {
    let out = root.join("blend-genre-trees");
    let cfg = RatingTreesConfig {
        genre_probabilities: true,
        ..cfg
    };
    let (_, blended) = blend_leaning_on_trees((a, b), &out, cfg, vec![0.0, 0.0, 1.0]);
    let trees = blended.trees.as_ref().unwrap();
    let own: Vec<_> = blended.parts.iter().map(|e| &e.lead().prepared).collect();
    assert_eq!(trees.n_genres, own[0].preprocessor.genre_names().len());
    let (mean, each) = blended.predict(&own, Some(Split::Test)).unwrap();
    let lead = blended.parts[0].predict(own[0], Some(Split::Test)).1;
    let err = trees.predict_member(0, own[0], &each[0].ids).err().unwrap();
    assert!(format!("{err}").contains("genre probabilities"), "{err}");
    let rows: Vec<Vec<f64>> = each[0]
        .ids
        .iter()
        .map(|id| {
            let s = own[0].samples.iter().find(|s| &s.id == id).unwrap();
            cinefuse_train::rating_trees::tree_row(&s.numeric, &s.numeric_missing, &s.categorical)
        })
        .collect();
    let mut moved = false;
    for (k, member) in each.iter().enumerate() {
        let rated = trees.rate(k, &rows, &lead[k]).unwrap();
        let voteless = lacking_votes(own[0], &member.ids);
        for (i, r) in rated.iter().enumerate().filter(|(i, _)| !voteless[*i]) {
            assert!((member.rating[i] - r).abs() < 1e-4, "member {k}, movie {i}");
        }
        // The same metadata with the genres of another movie.
        let mut swapped = lead[k].clone();
        swapped.probs.rotate_left(swapped.n_genres);
        moved |= trees.rate(k, &rows, &swapped).unwrap() != rated;
    }
    assert!(moved, "the trees never split on a genre probability");
    let model = root.join("model-genre-trees");
    cinefuse_train::export::export(&out, &model, FLEX).unwrap();
    let card = std::fs::read_to_string(model.join("README.md")).unwrap();
    assert!(card.contains("--tree-genres"), "{card}");
    assert!(
        card.contains(
            "A movie given without its plot or poster gets a wider interval: without the"
        ),
        "{card}"
    );
    let predictor = Predictor::load(&model, FLEX).unwrap();
    let items = items_of(&predictor, &root.join("demo"), &mean.ids);
    let interval = blended.info.calibration.interval.as_ref();
    super::bag::assert_predicts_the_ensemble(&predictor, &items, &mean, &each, interval);
    let widened = widened_movies(interval.unwrap(), &mean, &each);
    assert!(widened > 0, "{:?}", interval.unwrap().input_scales);
    // eval counts them and says so.
    let report = evaluate(&out, Split::Test, None, FLEX).unwrap();
    assert_eq!(report.interval.as_ref().unwrap().widened, widened);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "{widened} given without their plot or poster, their intervals widened"
        )),
        "{text}"
    );
}

fn lacking_votes(prepared: &cinefuse_data::Prepared, ids: &[String]) -> Vec<bool> {
    ids.iter()
        .map(|id| {
            let s = prepared.samples.iter().find(|s| &s.id == id).unwrap();
            lacks_votes(&s.numeric_missing)
        })
        .collect()
}

#[test]
fn a_blend_refuses_runs_that_are_not_bags_on_the_same_folds() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut three = tiny_config(root, "");
    three.train.folds = 3;
    three.train.epochs = 1;
    let mut two = three.clone();
    two.train.folds = 2;
    let mut single = three.clone();
    single.train.folds = 0;
    let (a, b, c) = (root.join("three"), root.join("two"), root.join("single"));
    for (config, run) in [(&three, &a), (&two, &b), (&single, &c)] {
        train_into(config, run).unwrap();
    }
    let out = root.join("blend");
    let e = blend(&[a.clone(), b], &out, FLEX, BlendExtras::default()).unwrap_err();
    assert!(format!("{e:#}").contains("same folds"), "{e:#}");
    let e = blend(&[a.clone(), c.clone()], &out, FLEX, BlendExtras::default()).unwrap_err();
    assert!(format!("{e:#}").contains("not a bag"), "{e:#}");
    let e = blend(std::slice::from_ref(&a), &out, FLEX, BlendExtras::default()).unwrap_err();
    assert!(format!("{e:#}").contains("at least two"), "{e:#}");
    // The output may not be one of its inputs.
    let e = blend(&[a.clone(), a.clone()], &a, FLEX, BlendExtras::default()).unwrap_err();
    assert!(format!("{e:#}").contains("input"), "{e:#}");
    assert!(!out.exists(), "nothing written on refusal");
}

#[test]
fn train_blend_with_trains_both_bags_on_the_same_folds_and_resumes() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The partner's own seed and folds are overridden by the main config's; its bag sets are
    // too unless its overrides name them (here: one set beside the lead's two).
    let mut partner = tiny_config(root, "");
    partner.name = "tiny-words".into();
    partner.seed = 99;
    partner.train.folds = 5;
    partner.model.modalities = vec![Modality::Text, Modality::Meta];
    let partner_file = root.join("partner.toml");
    std::fs::write(&partner_file, partner.to_toml()).unwrap();
    let mut config = tiny_config(root, "");
    config.train.folds = 3;
    config.train.bag_sets = 2;
    config.train.blend_with = vec![cinefuse_train::config::BlendPartner {
        config: partner_file.clone(),
        set: vec!["model.fusion.kind=concat".into(), "train.bag_sets=1".into()],
    }];
    config.train.rating_trees = Some(RatingTreesConfig::default());

    let run = root.join("run");
    let part = super::train_interrupted(&config, &run, 3);
    assert_eq!(part.run_dir, run);
    assert!(!run.join("blend.json").exists());
    // Resuming needs no partner file: the started bags keep their saved configs, and the
    // partner's is read once when its bag starts.
    super::resume(&config, &run);
    assert!(run.join("blend.json").is_file());
    let words = cinefuse_train::bag::read_bag(&run.join("bag-1")).unwrap();
    assert_eq!((words.folds, words.seed, words.sets), (3, config.seed, 1));
    let lead = cinefuse_train::bag::read_bag(&run.join("bag-0")).unwrap();
    assert_eq!((lead.sets, lead.done.len()), (2, 6));
    let saved = cinefuse_train::TrainConfig::load(&run.join("bag-1/config.toml"), &[]).unwrap();
    assert_eq!(
        saved.model.fusion.kind,
        cinefuse_model::fusion::FusionKind::Concat,
        "the partner's overrides apply"
    );
    assert!(saved.train.blend_with.is_empty());
    assert!(
        saved.train.rating_trees.is_none(),
        "the trees are the blend's, not a bag's"
    );

    let report = evaluate(&run, Split::Test, None, FLEX).unwrap();
    let summary = report.bag.clone().unwrap();
    assert_eq!(summary.blend.len(), 3);
    assert!(summary.blend[1].run.ends_with("bag-1"));
    assert!(summary.blend[2].run.ends_with(TREES_FILE));
    assert!(format!("{report}").contains("blend of 2 bags and rating trees"));

    // The same blend trained by hand from the two bags gives the same weights.
    let by_hand = blend(
        &[run.join("bag-0"), run.join("bag-1")],
        &root.join("b"),
        FLEX,
        with_trees(RatingTreesConfig::default()),
    )
    .unwrap();
    let trained: cinefuse_train::blend::BlendInfo =
        cinefuse_train::run_dir::read_json(&run.join("blend.json")).unwrap();
    assert_eq!(by_hand.genre_weights, trained.genre_weights);
    assert_eq!(
        by_hand.rating_weights, trained.rating_weights,
        "the trees train the same"
    );
    assert_eq!(
        by_hand.calibration.thresholds,
        trained.calibration.thresholds
    );

    // Exported, a repeated bag and a single-set one still blend member by member.
    let blended = Blend::open(&run, FLEX).unwrap().unwrap();
    let own: Vec<_> = blended.parts.iter().map(|e| &e.lead().prepared).collect();
    let (mean, each) = blended.predict(&own, Some(Split::Test)).unwrap();
    assert_eq!(each.len(), 3);
    let model = root.join("model");
    cinefuse_train::export::export(&run, &model, FLEX).unwrap();
    let predictor = Predictor::load(&model, FLEX).unwrap();
    assert_eq!(predictor.member_count(), 3);
    let items = items_of(&predictor, &root.join("demo"), &mean.ids);
    let cal = &trained.calibration;
    super::bag::assert_predicts_the_ensemble(
        &predictor,
        &items,
        &mean,
        &each,
        cal.interval.as_ref(),
    );
}

#[test]
fn blend_with_needs_folds() {
    let e = cinefuse_train::TrainConfig::from_toml_str(
        "name = \"x\"\n[[train.blend_with]]\nconfig = \"words.toml\"\n",
        "c.toml",
        &[],
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("train.blend_with needs train.folds"),
        "{e:#}"
    );
}

#[test]
fn rating_trees_need_folds_and_sane_settings() {
    let parse = |extra: &str| {
        cinefuse_train::TrainConfig::from_toml_str(&format!("name = \"x\"\n{extra}"), "c.toml", &[])
    };
    let e = parse("[train.rating_trees]\nmax_leaves = 15\n").unwrap_err();
    assert!(
        format!("{e:#}").contains("train.rating_trees needs train.folds"),
        "{e:#}"
    );
    let e = parse("[train]\nfolds = 3\n[train.rating_trees]\nlearning_rate = 0\n").unwrap_err();
    assert!(
        format!("{e:#}").contains("train.rating_trees: learning_rate must be"),
        "{e:#}"
    );
    // The earlier booster's knob is refused with the keys that replaced it.
    let e = parse("[train]\nfolds = 3\n[train.rating_trees]\nbudget = 1.0\n").unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("unknown key `train.rating_trees.budget`"), "{e}");
    assert!(
        e.contains("iterations, l2, learning_rate, max_leaves"),
        "{e}"
    );
    let e = parse("[train]\nfolds = 3\n[train.rating_trees]\ndepth = 3\n").unwrap_err();
    assert!(format!("{e:#}").contains("depth"), "{e:#}");
    let c = parse("[train]\nfolds = 3\n[train.rating_trees]\n").unwrap();
    assert_eq!(c.train.rating_trees, Some(RatingTreesConfig::default()));
    // A config's trees can be turned off from the command line.
    let off = ["train.rating_trees.enabled=false".to_string()];
    let c = cinefuse_train::TrainConfig::from_toml_str(
        "name = \"x\"\n[train]\nfolds = 3\n[train.rating_trees]\niterations = 100\n",
        "c.toml",
        &off,
    )
    .unwrap();
    assert_eq!(c.train.rating_trees, None);
}

/// A forest with every kind of split (numeric, categorical within and beyond its bitset,
/// missing to either side), built by hand: `cinefuse_torch.py`'s walk must score it as Rust
/// does. Trained forests have no categorical splits today, so only this test reaches that
/// branch of the reference. SKIPPED without a Python that has torch and safetensors.
#[test]
fn the_reference_walks_a_handmade_forest_as_rust_does() {
    use cinefuse_train::tree_forest::Forest;
    let repo = crate::manifest_dir().join("../..");
    let Some(python) = super::python_with("torch, safetensors") else {
        eprintln!("SKIPPED the reference's forest walk: no Python with torch and safetensors");
        return;
    };
    // Tree 0: node 0 splits column 0 at 0.5 (missing → right); node 2 splits category column 1,
    // categories 2 and 9 left (missing → left). Tree 1 is a single leaf.
    let cats = |bits: &[usize]| {
        let mut row = vec![0u8; 2];
        for b in bits {
            row[b / 8] |= 1 << (b % 8);
        }
        row
    };
    let forest = Forest {
        base: 5.0,
        roots: vec![0, 5],
        feature: vec![0, -1, 1, -1, -1, -1],
        threshold: vec![0.5, 0.0, 0.0, 0.0, 0.0, 0.0],
        left: vec![1, -1, 3, -1, -1, -1],
        right: vec![2, -1, 4, -1, -1, -1],
        missing: vec![2, -1, 3, -1, -1, -1],
        is_leaf: vec![0, 1, 0, 1, 1, 1],
        value: vec![0.0, -1.0, 0.0, 0.75, 2.5, 0.125],
        is_cat: vec![0, 0, 1, 0, 0, 0],
        cat_bytes: 2,
        cats: [vec![0; 4], cats(&[2, 9]), vec![0; 6]].concat(),
    };
    let trees = RatingTrees {
        members: vec![forest.clone()],
        n_numeric: 1,
        n_categorical: 1,
        n_genres: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(TREES_FILE);
    trees.save(&file).unwrap();
    let nan = f64::NAN;
    let rows = [
        [0.2, 2.0],
        [0.5, 2.0],
        [nan, 9.0],
        [0.9, 3.0],
        [0.9, 40.0],
        [0.9, nan],
    ];
    let want: Vec<f64> = rows.iter().map(|r| forest.predict_row(r)).collect();
    assert_eq!(want, vec![4.125, 5.875, 5.875, 7.625, 7.625, 5.875]);
    let script = format!(
        "import sys, json, numpy as np\nsys.path.insert(0, {scripts:?})\nimport cinefuse_torch as ct\n\
         from safetensors.numpy import load_file\n\
         rows = np.array([[0.2, 2], [0.5, 2], [np.nan, 9], [0.9, 3], [0.9, 40], [0.9, np.nan]])\n\
         print(json.dumps(ct.forest_ratings(load_file({file:?}), 0, rows).tolist()))\n",
        scripts = repo.join("scripts").display().to_string(),
        file = file.display().to_string(),
    );
    let out = super::run_python(&python, &["-c", &script]);
    let got: Vec<f64> = serde_json::from_slice(&out).unwrap();
    assert_eq!(got, want);
}
