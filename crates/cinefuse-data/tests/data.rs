//! Integration tests of the data layer: format, validation, splits, fitting, batching, synth,
//! and (in `data/import.rs`) the importers. One test binary for the crate.

#[path = "data/import.rs"]
mod import;
#[path = "data/safety.rs"]
mod safety;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::feature_cache::{CachedFeatures, FeatureTable};
use cinefuse_data::movie::{Movie, read_movies, write_movies};
use cinefuse_data::poster_states::PosterStates;
use cinefuse_data::prepare::{PrepareConfig, SplitMode};
use cinefuse_data::split::Split;
use cinefuse_data::token_states::TokenStates;
use cinefuse_data::tokenizer::TokenizerKind;
use cinefuse_data::{MovieBatcher, MovieItem, Prepared, prepare_dataset, synth};

/// This package's folder: Cargo's value when it runs the test (right even when the binary was
/// built from another checkout sharing the target folder), else the one compiled in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn small_config() -> PrepareConfig {
    PrepareConfig {
        image_width: 16,
        image_height: 24,
        tokenizer: TokenizerKind::Wordlevel,
        vocab_size: 500,
        min_token_freq: 1,
        max_tokens: 16,
        min_genre_count: 1,
        min_category_freq: 1,
        val_ratio: 0.2,
        test_ratio: 0.2,
        ..PrepareConfig::default()
    }
}

fn tiny_png(path: &Path, rgb: [u8; 3]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(20, 30, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

fn movie(id: &str, year: i32, rating: f32) -> Movie {
    Movie {
        title: Some(format!("Movie {id}")),
        year: Some(year),
        rating: Some(rating),
        genres: Some(vec!["Drama".into()]),
        plot: Some("a quiet story about a family".into()),
        ..Movie::new(id)
    }
}

fn dir_digest(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn format_round_trips_and_counts_missing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut full = movie("tt0000001", 1999, 7.5);
    full.languages = Some(vec!["English".into(), "French".into()]);
    full.budget = Some(1.5e7);
    full.poster = Some("posters/tt0000001.png".into());
    let bare = Movie::new("only-id");
    write_movies(dir.path(), &[full.clone(), bare.clone()]).unwrap();
    let back = read_movies(dir.path()).unwrap();
    assert_eq!(back, vec![full, bare.clone()]);
    assert!(!bare.has("plot") && !bare.has("rating"));
}

fn write_lines(dir: &Path, lines: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("movies.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn prepare_err(lines: &[&str], setup: impl Fn(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_lines(dir.path(), lines);
    setup(dir.path());
    let out = dir.path().join("prepared");
    let err = prepare_dataset(dir.path(), &out, &small_config())
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "nothing is written on failure");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "no staging directory left behind");
    err
}

const GOOD: &str = r#"{"id":"a","year":2000,"rating":7.0,"genres":["Drama"],"plot":"a story"}"#;

#[test]
fn each_validation_error_names_file_line_and_field() {
    let e = prepare_err(&[GOOD, "{not json"], |_| {});
    assert!(
        e.contains("movies.jsonl:2") && e.contains("malformed JSON"),
        "{e}"
    );

    let e = prepare_err(&[GOOD, r#"{"id":"b","year":"nineteen"}"#], |_| {});
    assert!(
        e.contains("movies.jsonl:2") && e.contains("field `year`") && e.contains("nineteen"),
        "{e}"
    );

    let e = prepare_err(&[GOOD, r#"{"id":"b","genres":"Drama"}"#], |_| {});
    assert!(
        e.contains("field `genres`") && e.contains("list of strings"),
        "{e}"
    );

    let e = prepare_err(&[GOOD, r#"{"id":"b","rating":11.5}"#], |_| {});
    assert!(
        e.contains(":2") && e.contains("field `rating`") && e.contains("0–10"),
        "{e}"
    );

    let e = prepare_err(&[GOOD, r#"{"id":"a","rating":5}"#], |_| {});
    assert!(e.contains(":2") && e.contains("duplicate id"), "{e}");

    let e = prepare_err(&[GOOD, r#"{"title":"no id"}"#], |_| {});
    assert!(e.contains("field `id`") && e.contains("missing"), "{e}");

    let e = prepare_err(&[GOOD, r#"{"id":"b","poster":"posters/none.png"}"#], |_| {});
    assert!(
        e.contains(":2") && e.contains("field `poster`") && e.contains("missing or unreadable"),
        "{e}"
    );

    let e = prepare_err(&[GOOD, r#"{"id":"b","poster":"posters/bad.png"}"#], |d| {
        fs::create_dir_all(d.join("posters")).unwrap();
        fs::write(
            d.join("posters/bad.png"),
            b"\x89PNG\r\n\x1a\nthis is not really a png",
        )
        .unwrap();
    });
    assert!(e.contains("field `poster`") && e.contains("corrupt"), "{e}");

    let e = prepare_err(&[GOOD, r#"{"id":"b","poster":"posters/big.png"}"#], |d| {
        fs::create_dir_all(d.join("posters")).unwrap();
        image::RgbImage::new(8000, 6000)
            .save(d.join("posters/big.png"))
            .unwrap();
    });
    assert!(e.contains("oversized"), "{e}");
}

#[test]
fn skip_bad_keeps_good_records_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    tiny_png(&dir.path().join("posters/a.png"), [200, 10, 10]);
    write_lines(
        dir.path(),
        &[
            r#"{"id":"a","year":2000,"rating":7.0,"genres":["Drama"],"plot":"a story","poster":"posters/a.png"}"#,
            "{oops",
            r#"{"id":"b","rating":12}"#,
            r#"{"id":"c","rating":6.0,"genres":["Comedy"],"poster":"posters/missing.png"}"#,
            r#"{"id":"d","rating":5.0,"genres":["Drama"]}"#,
        ],
    );
    let out = dir.path().join("prepared");
    let config = PrepareConfig {
        skip_bad: true,
        val_ratio: 0.0,
        test_ratio: 0.0,
        ..small_config()
    };
    let summary = prepare_dataset(dir.path(), &out, &config).unwrap();
    assert_eq!(summary.records_read, 5);
    assert_eq!(summary.records_kept, 3, "a, c (without poster) and d");
    assert_eq!(summary.records_skipped, 2);
    assert_eq!(summary.posters_dropped, 1);
    assert_eq!(summary.posters_cached, 1);
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("bad_records.json")).unwrap()).unwrap();
    let lines: Vec<u64> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4]);
    assert_eq!(report[2]["field"], "poster");
}

#[test]
fn splits_are_deterministic_and_predefined_splits_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let movies: Vec<Movie> = (0..200)
        .map(|i| movie(&format!("m{i}"), 1950 + i % 70, 5.0))
        .collect();
    write_movies(dir.path(), &movies).unwrap();
    let a = prepare_dataset(dir.path(), &dir.path().join("p1"), &small_config()).unwrap();
    let b = prepare_dataset(dir.path(), &dir.path().join("p2"), &small_config()).unwrap();
    assert_eq!(a.split_sizes, b.split_sizes);
    let pa = Prepared::open(&dir.path().join("p1")).unwrap();
    let pb = Prepared::open(&dir.path().join("p2")).unwrap();
    let splits = |p: &Prepared| {
        p.samples
            .iter()
            .map(|s| (s.id.clone(), s.split))
            .collect::<Vec<_>>()
    };
    assert_eq!(splits(&pa), splits(&pb));
    assert!(a.split_sizes["val"] > 20 && a.split_sizes["test"] > 20);

    let split = serde_json::json!({"train": ["m0", "m1", "m2"], "dev": ["m3"], "test": ["m4"]});
    fs::write(dir.path().join("split.json"), split.to_string()).unwrap();
    let c = prepare_dataset(dir.path(), &dir.path().join("p3"), &small_config()).unwrap();
    assert_eq!(c.split_source, "split.json");
    assert_eq!(
        (
            c.split_sizes["train"],
            c.split_sizes["val"],
            c.split_sizes["test"]
        ),
        (3, 1, 1)
    );
    let forced = PrepareConfig {
        split: SplitMode::Hash,
        ..small_config()
    };
    let d = prepare_dataset(dir.path(), &dir.path().join("p4"), &forced).unwrap();
    assert_eq!(d.records_kept, 200);
}

#[test]
fn preprocessing_is_fitted_on_train_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut movies: Vec<Movie> = (0..300)
        .map(|i| movie(&format!("m{i}"), 2000, 6.0))
        .collect();
    // A unique certificate and genre per movie reveal which split fitted the vocabularies.
    for m in &mut movies {
        m.certificate = Some(format!("cert-{}", m.id));
        m.genres = Some(vec![format!("genre-{}", m.id)]);
    }
    write_movies(dir.path(), &movies).unwrap();
    let out = dir.path().join("p");
    prepare_dataset(dir.path(), &out, &small_config()).unwrap();
    let p = Prepared::open(&out).unwrap();
    let state = &p.preprocessor.state;
    let train_ids: Vec<&str> = p
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .map(|s| s.id.as_str())
        .collect();
    let cert = state
        .categorical
        .iter()
        .find(|v| v.name == "certificate")
        .unwrap();
    assert_eq!(
        cert.values.len(),
        train_ids.len(),
        "one certificate per training movie"
    );
    for v in &cert.values {
        let id = v.trim_start_matches("cert-");
        assert!(
            train_ids.contains(&id),
            "{v} must come from a training movie"
        );
    }
    assert_eq!(state.genres.len(), train_ids.len());
    // Scalers: year is constant in train, rating too.
    let year = state.numeric.iter().find(|s| s.name == "year").unwrap();
    assert_eq!(year.fitted_on, train_ids.len());
    assert!((state.rating_mean - 6.0).abs() < 1e-9);
    // A validation movie's certificate is out of vocabulary.
    let val = p.samples.iter().find(|s| s.split == Split::Val).unwrap();
    assert_eq!(val.categorical[0], cinefuse_data::vocab::OOV_ID);
}

/// `movies` written into `dir` and prepared into `dir/p`, every one of them in the training split.
fn prepare_all_train(dir: &Path, movies: &[Movie]) -> Prepared {
    write_movies(dir, movies).unwrap();
    let config = PrepareConfig {
        val_ratio: 0.0,
        test_ratio: 0.0,
        ..small_config()
    };
    prepare_dataset(dir, &dir.join("p"), &config).unwrap();
    Prepared::open(&dir.join("p")).unwrap()
}

/// A poster fine-tuning run's cached frozen-block maps: a movie with a poster carries its map
/// and no pixels, one without carries neither, and the batch stacks the maps with zeros for it.
#[test]
fn poster_maps_travel_with_their_items_instead_of_pixels() {
    let dir = tempfile::tempdir().unwrap();
    tiny_png(&dir.path().join("posters/a.png"), [255, 0, 0]);
    let mut a = movie("a", 2001, 8.0);
    a.poster = Some("posters/a.png".into());
    let b = movie("b", 2002, 4.0);
    let mut p = prepare_all_train(dir.path(), &[a, b]);
    let values: Vec<f32> = (0..2 * 12).map(|v| v as f32).collect();
    let table = FeatureTable::new(12, "k".into(), values);
    p.features = Some(Arc::new(CachedFeatures {
        poster_states: Some(Arc::new(PosterStates::new(14, [3, 2, 2], Arc::new(table)))),
        ..Default::default()
    }));
    let ds = p.dataset_all();
    let items: Vec<MovieItem> = (0..2).map(|i| ds.get(i).unwrap()).collect();
    let row_a = p.samples.iter().position(|s| s.id == "a").unwrap();
    let (with, without) = (&items[row_a], &items[1 - row_a]);
    assert!(with.poster.is_none(), "no pixels copied");
    let map = with.poster_states.as_ref().expect("a has its map");
    assert_eq!((map.from_block, map.shape), (14, [3, 2, 2]));
    let first = (row_a * 12) as f32;
    assert_eq!(
        map.values,
        (0..12).map(|v| first + v as f32).collect::<Vec<_>>()
    );
    assert!(without.poster_states.is_none(), "b has no poster");
    let batch = MovieBatcher::new(24, 16, 16).batch(items.clone(), &Device::flex());
    let s = batch.poster_states.expect("the batch carries them");
    assert_eq!((s.from_block, s.maps.dims()), (14, [2, 3, 2, 2]));
    assert_eq!(batch.posters.dims(), [2, 3, 1, 1], "no pixel tensor");
    let v = s
        .maps
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(v[row_a * 12..(row_a + 1) * 12], map.values[..]);
    assert!(
        v[(1 - row_a) * 12..(2 - row_a) * 12]
            .iter()
            .all(|x| *x == 0.0)
    );
    let present = batch
        .poster_present
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(present[row_a], 1.0);
    assert_eq!(present[1 - row_a], 0.0);
}

/// A fine-tuning run's cached frozen-layer states: each item carries its own token rows, the
/// batch lays them out like its tokens (zeros after each movie's rows), and a block that
/// does not match its movie's tokens is refused.
#[test]
fn token_states_travel_with_their_items_and_pad_like_the_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = movie("a", 2001, 8.0);
    a.plot = Some("one two three".into());
    let mut b = movie("b", 2002, 4.0);
    b.plot = None;
    let mut p = prepare_all_train(dir.path(), &[a, b]);
    let mut states = TokenStates::new(3, 2);
    let rows: Vec<usize> = p.samples.iter().map(|s| s.tokens.len().max(1)).collect();
    for (i, r) in rows.iter().enumerate() {
        let block: Vec<f32> = (0..r * 2).map(|v| (100 * (i + 1) + v) as f32).collect();
        states.push(&block);
    }
    p.features = Some(Arc::new(CachedFeatures {
        plot_states: Some(Arc::new(states)),
        ..Default::default()
    }));
    let ds = p.dataset_all();
    let items: Vec<MovieItem> = (0..2).map(|i| ds.get(i).unwrap()).collect();
    assert_eq!(items[0].plot_states.as_ref().unwrap().from_layer, 3);
    let batcher = MovieBatcher::new(8, 8, 16);
    let batch = batcher.batch(items.clone(), &Device::flex());
    let s = batch.plot_states.expect("the batch carries them");
    let len = batch.tokens.dims()[1];
    assert_eq!(s.states.dims(), [2, len, 2]);
    let v = s
        .states
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    for (i, r) in rows.iter().enumerate() {
        let row = &v[i * len * 2..(i + 1) * len * 2];
        let expected: Vec<f32> = (0..len * 2)
            .map(|k| {
                if k < r * 2 {
                    (100 * (i + 1) + k) as f32
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(row, expected, "movie {i}");
    }
    let mut short = items;
    short[0]
        .plot_states
        .as_mut()
        .unwrap()
        .values
        .truncate(2 * (rows[0] - 1));
    let refused = std::panic::catch_unwind(|| batcher.batch(short, &Device::flex()));
    assert!(
        refused.is_err(),
        "a block shorter than its tokens is refused"
    );
}

#[test]
fn batcher_builds_tensors_with_the_right_shapes_dtypes_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    tiny_png(&dir.path().join("posters/a.png"), [255, 0, 0]);
    let mut a = movie("a", 2001, 8.0);
    a.poster = Some("posters/a.png".into());
    a.plot = Some("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen".into());
    let mut b = movie("b", 2002, 4.0);
    b.plot = None;
    b.rating = None;
    b.genres = None;
    let p = prepare_all_train(dir.path(), &[a, b]);
    let ds = p.dataset(Split::Train);
    assert_eq!(ds.len(), 2);
    let items: Vec<_> = (0..2).map(|i| ds.get(i).unwrap()).collect();
    let device = Device::flex();
    let batch = MovieBatcher::new(24, 16, 16).batch(items, &device);
    assert_eq!(batch.posters.dims(), [2, 3, 24, 16]);
    assert_eq!(
        batch.tokens.dims(),
        [2, 16],
        "padded to the longest plot, capped at max_tokens"
    );
    assert_eq!(batch.numeric.dims(), [2, 5]);
    assert_eq!(batch.numeric_missing.dims(), [2, 5]);
    assert_eq!(batch.categorical.dims(), [2, 5]);
    assert_eq!(batch.genres.dims()[0], 2);
    let f = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    assert_eq!(f(batch.poster_present.clone()), vec![1.0, 0.0]);
    assert_eq!(f(batch.plot_present.clone()), vec![1.0, 0.0]);
    assert_eq!(f(batch.rating_present.clone()), vec![1.0, 0.0]);
    assert_eq!(f(batch.genres_present.clone()), vec![1.0, 0.0]);
    assert_eq!(f(batch.rating.clone()), vec![8.0, 0.0]);
    let mask = batch
        .token_mask
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(mask[..16].iter().all(|m| *m == 1.0));
    assert!(mask[16..].iter().all(|m| *m == 0.0));
    let pad = batch
        .token_pad
        .clone()
        .into_data()
        .try_to_vec::<bool>()
        .unwrap();
    assert!(pad[16..].iter().all(|p| *p) && !pad[0]);
    // The missing poster is all zeros; the red poster's red channel is above its mean.
    let px = batch
        .posters
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let plane = 24 * 16;
    assert!(
        px[..plane].iter().all(|v| *v > 1.5),
        "red channel normalized high"
    );
    assert!(px[3 * plane..].iter().all(|v| *v == 0.0));
    let tokens = batch
        .tokens
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert!(tokens[16..].iter().all(|t| *t == 0), "padding id");
}

#[test]
fn works_with_burns_data_loader_with_workers_and_shuffling() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_synthetic(&dir.path().join("demo"), 60, 3).unwrap();
    prepare_dataset(
        &dir.path().join("demo"),
        &dir.path().join("p"),
        &small_config(),
    )
    .unwrap();
    let p = Prepared::open(&dir.path().join("p")).unwrap();
    let n = p.dataset(Split::Train).len();
    let loader = DataLoaderBuilder::new(MovieBatcher::new(24, 16, 16))
        .batch_size(8)
        .shuffle(42)
        .num_workers(2)
        .set_device(Device::flex())
        .build(p.dataset(Split::Train));
    let order = |seed: u64| {
        let loader = DataLoaderBuilder::new(MovieBatcher::new(24, 16, 16))
            .batch_size(8)
            .shuffle(seed)
            .num_workers(2)
            .set_device(Device::flex())
            .build(p.dataset(Split::Train));
        let mut ids = Vec::new();
        for batch in loader.iter() {
            let batch = batch.unwrap();
            assert_eq!(batch.posters.dims()[1..], [3, 24, 16]);
            ids.extend(batch.ids);
        }
        ids
    };
    let ids = loader
        .iter()
        .flat_map(|b| b.unwrap().ids)
        .collect::<Vec<_>>();
    assert_eq!(ids.len(), n, "as many items as training movies, none twice");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        n,
        "every training movie exactly once per epoch"
    );
    let (a, b) = (order(42), order(7));
    assert_ne!(a, b, "another seed, another order");
    let (mut sa, mut sb) = (a.clone(), b);
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb, "the same movies");
}

#[test]
fn synth_refuses_sizes_it_cannot_hold_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    for n in [0, synth::MAX_SYNTH_MOVIES + 1, usize::MAX] {
        let e = synth::write_synthetic(&dir.path().join("d"), n, 1).unwrap_err();
        assert!(
            e.to_string().contains("synthetic movies: expected 1..="),
            "{e}"
        );
    }
    assert!(!dir.path().join("d").exists());
}

#[test]
fn synth_is_byte_identical_for_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_synthetic(&dir.path().join("a"), 40, 11).unwrap();
    synth::write_synthetic(&dir.path().join("b"), 40, 11).unwrap();
    synth::write_synthetic(&dir.path().join("c"), 40, 12).unwrap();
    let (a, b, c) = (
        dir_digest(&dir.path().join("a")),
        dir_digest(&dir.path().join("b")),
        dir_digest(&dir.path().join("c")),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    let movies = read_movies(&dir.path().join("a")).unwrap();
    assert_eq!(movies.len(), 40);
    assert!(movies.iter().any(|m| m.poster.is_none()) || movies.iter().any(|m| m.plot.is_none()));
    assert!(
        movies
            .iter()
            .all(|m| m.genres.as_ref().is_some_and(|g| !g.is_empty()))
    );
}

#[test]
fn synth_poster_signal_depends_on_genre() {
    // Horror posters are darker than Animation posters on average: the signal a CNN learns.
    let movies = synth::generate(400, 5);
    let brightness = |genre: &str| {
        let v: Vec<f64> = movies
            .iter()
            .filter(|(m, p)| p.is_some() && m.genres.as_ref().unwrap().iter().any(|g| g == genre))
            .map(|(_, p)| {
                let p = p.as_ref().unwrap();
                p.pixels()
                    .map(|px| px.0.iter().map(|c| f64::from(*c)).sum::<f64>())
                    .sum::<f64>()
                    / (p.len() as f64)
            })
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(brightness("Horror") + 40.0 < brightness("Animation"));
}
