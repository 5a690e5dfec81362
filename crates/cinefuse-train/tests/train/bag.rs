//! (imported into the `train` test binary)
//! K-fold bagging: members on disjoint folds of train + validation (never test), out-of-fold
//! calibration, the bag's mean in eval and in the export, the refit model, and resume.

use std::collections::HashSet;

use cinefuse_data::output_dir::{OutputKind, write_marker};
use cinefuse_data::split::Split;
use cinefuse_train::bag::{BagInfo, REFIT_DIR, member_dir, read_bag};
use cinefuse_train::bag_sets::{self, set_member_dir};
use cinefuse_train::config::BackendKind;
use cinefuse_train::ensemble::Ensemble;
use cinefuse_train::evaluate::{LoadedRun, evaluate};
use cinefuse_train::interval::Calibration;
use cinefuse_train::predictions::Predictions;
use cinefuse_train::predictor::Predictor;
use cinefuse_train::run_dir::{
    CHECKPOINTS_DIR, CONFIG_FILE, LOCK_FILE, RUN_FILE, RunInfo, TrainRows, read_json,
};

use super::{items_of, resume, serial, tiny_config, train_interrupted, train_into};

fn bag_config(root: &std::path::Path) -> cinefuse_train::TrainConfig {
    let mut c = tiny_config(root, "");
    c.train.folds = 3;
    c.train.refit = true;
    // Up-weighted positives: members, eval and export all take the same logit shift out.
    c.loss.pos_weight = true;
    c.loss.pos_weight_max = 3.0;
    c
}

#[test]
fn a_bag_trains_on_folds_calibrates_out_of_fold_and_exports_its_mean() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = bag_config(dir.path());
    let bag = dir.path().join("bag");
    train_into(&config, &bag).unwrap();
    let info: BagInfo = read_bag(&bag).unwrap();
    assert_eq!(info.done, [true; 3]);
    assert!(info.refit_done);

    // The members' held-out folds partition train + validation; test is in none of them.
    let lead = LoadedRun::open(&member_dir(&bag, 0), Some(BackendKind::Flex)).unwrap();
    let samples = lead.prepared.samples.clone();
    let mut seen = HashSet::new();
    for fold in 0..3 {
        let run: RunInfo = read_json(&member_dir(&bag, fold).join(RUN_FILE)).unwrap();
        assert_eq!(
            run.rows,
            TrainRows::Fold {
                index: fold,
                count: 3,
                seed: config.seed
            }
        );
        let held = lead.prepared.fold_indices(config.seed, fold, 3, true);
        assert!(!held.is_empty());
        for i in held {
            assert_ne!(
                samples[i].split,
                Split::Test,
                "test movies are never in a fold"
            );
            assert!(seen.insert(i), "movie {i} in two folds");
        }
    }
    assert_eq!(seen.len(), lead.prepared.labelled_indices().len());
    // oof_predictions.csv: each of those movies once, under the fold that held it out.
    let oof = std::fs::read_to_string(bag.join(cinefuse_train::oof::OOF_FILE)).unwrap();
    let mut oof_folds = std::collections::HashMap::new();
    for line in oof.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(
            oof_folds
                .insert(cells[0].to_string(), cells[1].parse::<usize>().unwrap())
                .is_none()
        );
    }
    assert_eq!(oof_folds.len(), seen.len());
    for fold in 0..3 {
        for i in lead.prepared.fold_indices(config.seed, fold, 3, true) {
            assert_eq!(oof_folds[&samples[i].id], fold, "{}", samples[i].id);
        }
    }
    // One logit shift for every member (from the train split's counts, not the member's rows).
    let genres = &lead.prepared.preprocessor.state.genres;
    let shift = config
        .loss
        .genre_logit_shift(&genres.train_counts, genres.train_movies_with_genres);
    assert!(shift.iter().any(|s| *s > 0.1), "{shift:?}");
    for fold in 0..3 {
        let run: RunInfo = read_json(&member_dir(&bag, fold).join(RUN_FILE)).unwrap();
        assert_eq!(run.genre_logit_shift, shift);
    }
    let cal = info.calibration.as_ref().unwrap();
    assert_eq!(
        cal.out_of_fold.movies,
        seen.len(),
        "one out-of-fold prediction per movie"
    );
    assert_eq!(cal.out_of_fold.interval_per_fold.len(), 3);
    let refit: RunInfo = read_json(&bag.join(REFIT_DIR).join(RUN_FILE)).unwrap();
    let mean_best = cal.best_epochs.iter().sum::<usize>() as f64 / 3.0;
    assert_eq!(
        refit.rows,
        TrainRows::All {
            epochs: (mean_best.round() as usize).max(1)
        }
    );

    // eval: the members' mean with the out-of-fold thresholds.
    let report = evaluate(&bag, Split::Test, None, Some(BackendKind::Flex)).unwrap();
    let summary = report.bag.as_ref().unwrap();
    assert_eq!((summary.members, summary.refit), (3, false));
    assert_eq!(
        report
            .genres
            .per_genre
            .iter()
            .map(|g| g.threshold)
            .collect::<Vec<_>>(),
        cal.thresholds
    );
    let e = Ensemble::open(&bag, Some(BackendKind::Flex))
        .unwrap()
        .unwrap();
    let (mean, each) = e.predict(&e.lead().prepared, Some(Split::Test));
    for i in 0..mean.ids.len() {
        let avg = each.iter().map(|p| p.rating[i]).sum::<f32>() / 3.0;
        assert!((mean.rating[i] - avg).abs() < 1e-6);
    }
    let refit_report = evaluate(
        &bag.join(REFIT_DIR),
        Split::Test,
        None,
        Some(BackendKind::Flex),
    )
    .unwrap();
    assert_eq!(
        refit_report.bag.as_ref().map(|b| (b.members, b.refit)),
        Some((1, true))
    );

    // The export predicts with the same mean, thresholds and interval.
    let model = dir.path().join("model");
    cinefuse_train::export::export(&bag, &model, Some(BackendKind::Flex)).unwrap();
    let predictor = Predictor::load(&model, Some(BackendKind::Flex)).unwrap();
    assert_eq!(predictor.manifest.members.len(), 3);
    assert_eq!(predictor.manifest.thresholds, cal.thresholds);
    assert_eq!(predictor.manifest.genre_logit_shift, shift);
    let items = items_of(&predictor, &dir.path().join("demo"), &mean.ids);
    assert_predicts_the_ensemble(&predictor, &items, &mean, &each, cal.interval.as_ref());
    // Exported again (the members rebuilt, with new parameter ids): the same weights digest.
    let again = dir.path().join("model-again");
    cinefuse_train::export::export(&bag, &again, Some(BackendKind::Flex)).unwrap();
    let again = Predictor::load(&again, Some(BackendKind::Flex)).unwrap();
    assert_eq!(
        again.manifest.weights_sha256,
        predictor.manifest.weights_sha256
    );
    // Export checks itself against the bag's own predictions before it is published: the
    // same export against other expectations (one probability moved by 1e-3) is refused.
    let check = cinefuse_train::export_check::check_export;
    let demo = dir.path().join("demo");
    let hash = &predictor.manifest.data_hash;
    check(&model, &demo, hash, &mean, Some(BackendKind::Flex)).unwrap();
    let mut moved = mean.clone();
    moved.probs[0] += 1e-3;
    let e = check(&model, &demo, hash, &moved, Some(BackendKind::Flex)).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "predicts movie {} differently from the run",
            mean.ids[0]
        )),
        "{e}"
    );
    // Records that are not the ones it trained on: not compared (they would predict otherwise
    // for no fault of the export), the export stands.
    check(
        &model,
        &demo,
        "another dataset",
        &moved,
        Some(BackendKind::Flex),
    )
    .unwrap();
}

/// The exported `predictor` predicts, for `items`, the ensemble's mean rating and genre
/// probabilities, and the CV+ interval `interval` around its members' ratings `each` (widened
/// for a movie given without its plot or poster).
pub(super) fn assert_predicts_the_ensemble(
    predictor: &Predictor,
    items: &[cinefuse_train::predictor::ModelInput],
    mean: &Predictions,
    each: &[Predictions],
    interval: Option<&Calibration>,
) {
    for (i, p) in predictor.predict(items).iter().enumerate() {
        assert!(
            (p.rating - mean.rating[i]).abs() < 1e-4,
            "{} vs {}",
            p.rating,
            mean.rating[i]
        );
        for (k, name) in predictor.manifest.genres.iter().enumerate() {
            let score = p.genres.iter().find(|s| &s.genre == name).unwrap();
            assert!((score.probability - mean.probs[i * mean.n_genres + k]).abs() < 1e-4);
        }
        let member_ratings: Vec<f32> = each.iter().map(|m| m.rating[i]).collect();
        // A movie given without its plot or poster: its interval widened by the blend's scale.
        let without = mean.given_without_of(i);
        let expected =
            interval.and_then(|c| c.interval_given(&member_ratings, mean.votes[i], without));
        assert_eq!(p.rating_interval, expected);
    }
}

#[test]
fn an_interrupted_bag_resumes_where_it_stopped() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = bag_config(dir.path());
    config.train.refit = false;
    let bag = dir.path().join("bag");
    // Stopped inside the first member: the bag stops too and says how to resume.
    let part = train_interrupted(&config, &bag, 3);
    assert_eq!(part.run_dir, bag);
    let info = read_bag(&bag).unwrap();
    assert_eq!(info.done, [false; 3]);
    assert!(info.calibration.is_none());
    let e = evaluate(&bag, Split::Test, None, Some(BackendKind::Flex));
    assert!(e.is_err(), "an unfinished bag cannot be evaluated");
    // Kills no checkpoint follows: the first member before its first checkpoint, the second
    // during its setup (its folder holds the marker, the lock and the config, no run.json).
    std::fs::remove_dir_all(member_dir(&bag, 0).join(CHECKPOINTS_DIR)).unwrap();
    let second = member_dir(&bag, 1);
    std::fs::create_dir(&second).unwrap();
    write_marker(&second, OutputKind::Run).unwrap();
    std::fs::copy(
        member_dir(&bag, 0).join(CONFIG_FILE),
        second.join(CONFIG_FILE),
    )
    .unwrap();
    std::fs::write(second.join(LOCK_FILE), "pid 1").unwrap();
    resume(&config, &bag);
    let info = read_bag(&bag).unwrap();
    assert_eq!(info.done, [true; 3]);
    assert!(info.calibration.is_some());
}

#[test]
fn a_repeated_bag_averages_its_sets_genres_and_ratings() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = bag_config(dir.path());
    (
        config.train.folds,
        config.train.bag_sets,
        config.train.refit,
    ) = (2, 2, false);
    let bag = dir.path().join("bag");
    train_into(&config, &bag).unwrap();
    let info = read_bag(&bag).unwrap();
    assert_eq!((info.sets, info.done.clone()), (2, vec![true; 4]));
    assert!(info.rating_over_sets);
    // The second set: its own folds and initialisation, seeded 1000 on.
    let second_seed = config.seed + 1000;
    for fold in 0..2 {
        let member = set_member_dir(&bag, 1, fold);
        let run: RunInfo = read_json(&member.join(RUN_FILE)).unwrap();
        let rows = TrainRows::Fold {
            index: fold,
            count: 2,
            seed: second_seed,
        };
        assert_eq!(run.rows, rows);
        let saved = cinefuse_train::TrainConfig::load(&member.join(CONFIG_FILE), &[]).unwrap();
        assert_eq!((saved.seed, saved.train.bag_sets), (second_seed, 1));
    }

    // Out of fold: each movie's genres and rating are the mean of the two members that did not
    // see it.
    let held_out = |set: usize| -> Predictions {
        let seed = bag_sets::set_seed(config.seed, set);
        Predictions::concat(
            &(0..2)
                .map(|fold| {
                    let member = set_member_dir(&bag, set, fold);
                    let m = LoadedRun::open(&member, Some(BackendKind::Flex)).unwrap();
                    m.predict_rows(m.prepared.fold_indices(seed, fold, 2, true))
                })
                .collect::<Vec<_>>(),
        )
    };
    let (first, second) = (held_out(0), held_out(1));
    let second = second
        .select(&first.ids)
        .expect("both sets cover every movie");
    assert_ne!(first.probs, second.probs, "the sets differ");
    let oof = std::fs::read_to_string(bag.join(cinefuse_train::oof::OOF_FILE)).unwrap();
    let g = first.n_genres;
    let mut lines = 0;
    for (i, line) in oof.lines().skip(1).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], first.ids[i]);
        let rating: f32 = cells[2].parse().unwrap();
        let mean = (first.rating[i] + second.rating[i]) / 2.0;
        assert!((rating - mean).abs() < 1e-3, "{line}: {rating} vs {mean}");
        for k in 0..g {
            let p: f32 = cells[4 + k].parse().unwrap();
            let mean = (first.probs[i * g + k] + second.probs[i * g + k]) / 2.0;
            assert!((p - mean).abs() < 1e-4, "{line}: {p} vs {mean}");
        }
        lines += 1;
    }
    assert_eq!(lines, first.ids.len());
    let cal = info.calibration.clone().unwrap();
    assert_eq!(
        cal.out_of_fold.interval_per_fold.len(),
        2,
        "CV+ on set 0's folds"
    );

    // eval, export and predict: two logical members; genres and rating the mean of all four.
    let e = Ensemble::open(&bag, Some(BackendKind::Flex))
        .unwrap()
        .unwrap();
    assert_eq!(e.members.len(), 4);
    let (mean, each) = e.predict(&e.lead().prepared, Some(Split::Test));
    assert_eq!(each.len(), 2);
    let all: Vec<Predictions> = e
        .members
        .iter()
        .map(|m| m.predict(&e.lead().prepared, Some(Split::Test)))
        .collect();
    for i in 0..mean.ids.len() {
        let rating = all.iter().map(|m| m.rating[i]).sum::<f32>() / 4.0;
        assert!((mean.rating[i] - rating).abs() < 1e-5);
        for k in 0..g {
            let p = all.iter().map(|m| m.probs[i * g + k]).sum::<f32>() / 4.0;
            assert!((mean.probs[i * g + k] - p).abs() < 1e-5);
        }
    }
    let report = evaluate(&bag, Split::Test, None, Some(BackendKind::Flex)).unwrap();
    let summary = report.bag.as_ref().unwrap();
    assert_eq!((summary.members, summary.sets), (4, 2));
    assert!(format!("{report}").contains("bag of 4 members (2 sets of 2 folds)"));
    let status = cinefuse_train::run_dir::RunDir::new(&bag).status(&config.train);
    assert_eq!(status, "finished (bag of 2 × 2 sets)");
    let model = dir.path().join("model");
    cinefuse_train::export::export(&bag, &model, Some(BackendKind::Flex)).unwrap();
    let predictor = Predictor::load(&model, Some(BackendKind::Flex)).unwrap();
    assert_eq!(
        (
            predictor.manifest.members.len(),
            predictor.manifest.bag_sets,
            predictor.manifest.rating_over_sets
        ),
        (4, 2, true)
    );
    assert_eq!(predictor.member_count(), 2);
    let items = items_of(&predictor, &dir.path().join("demo"), &mean.ids);
    assert_predicts_the_ensemble(&predictor, &items, &mean, &each, cal.interval.as_ref());

    // A bag recorded before the rating averaged over the sets (no such field) still predicts
    // as it was calibrated: the first set's rating.
    let bag_file = bag.join(cinefuse_train::bag::BAG_FILE);
    let mut older = serde_json::to_value(&info).unwrap();
    older.as_object_mut().unwrap().remove("rating_over_sets");
    std::fs::write(&bag_file, older.to_string()).unwrap();
    let old = Ensemble::open(&bag, Some(BackendKind::Flex))
        .unwrap()
        .unwrap();
    let (old_mean, _) = old.predict(&old.lead().prepared, Some(Split::Test));
    assert_eq!(old_mean.probs, mean.probs);
    for i in 0..mean.ids.len() {
        let rating = (all[0].rating[i] + all[1].rating[i]) / 2.0;
        assert!((old_mean.rating[i] - rating).abs() < 1e-5);
    }

    // A member of the second set lost: resume trains it alone, and the same seeds give the
    // same calibration.
    let mut short = info.clone();
    short.done.pop();
    cinefuse_train::run_dir::write_json(&bag_file, &short).unwrap();
    let e = evaluate(&bag, Split::Test, None, Some(BackendKind::Flex)).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("bag.json: 2 folds in 2 sets need 4 members, `done` lists 3"),
        "{e}"
    );
    let kept = std::fs::read(member_dir(&bag, 0).join(RUN_FILE)).unwrap();
    let mut lost = info.clone();
    lost.done[3] = false;
    lost.calibration = None;
    cinefuse_train::run_dir::write_json(&bag_file, &lost).unwrap();
    std::fs::remove_dir_all(set_member_dir(&bag, 1, 1)).unwrap();
    let e = evaluate(&bag, Split::Test, None, Some(BackendKind::Flex));
    assert!(e.is_err(), "an uncalibrated bag cannot be evaluated");
    resume(&config, &bag);
    let again = read_bag(&bag).unwrap();
    assert_eq!(again.done, [true; 4]);
    assert_eq!(
        std::fs::read(member_dir(&bag, 0).join(RUN_FILE)).unwrap(),
        kept
    );
    let again = serde_json::to_string(&again.calibration).unwrap();
    assert_eq!(again, serde_json::to_string(&info.calibration).unwrap());
}
