//! Report tests: every section is present and every chart decodes as an image.

use cinefuse_report::run_report::GenreConfusion;
use cinefuse_report::{CurvePoint, RunReportData, write_eda, write_run_report};

#[test]
fn eda_report_has_every_section_and_decodable_images() {
    let dir = tempfile::tempdir().unwrap();
    cinefuse_data::synth::write_synthetic(&dir.path().join("demo"), 120, 9).unwrap();
    let out = dir.path().join("report");
    let summary = write_eda(&dir.path().join("demo"), &out).unwrap();
    assert_eq!(summary.movies, 120);
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for section in [
        "missing",
        "rating",
        "genres",
        "correlations",
        "years",
        "posters",
        "people",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{section}\">")),
            "section {section}"
        );
        assert!(summary.sections.contains(&section.to_string()));
    }
    for h in [
        "Rating distribution",
        "Correlations of numeric features",
        "Posters by genre",
        "Top directors and certificates",
    ] {
        assert!(html.contains(h), "{h}");
    }
    assert!(summary.images.len() >= 12, "{:?}", summary.images);
    for img in &summary.images {
        assert!(
            html.contains(&format!("src=\"{img}\"")),
            "{img} linked from the page"
        );
        let decoded = image::open(out.join(img)).unwrap_or_else(|e| panic!("{img}: {e}"));
        assert!(decoded.width() >= 100 && decoded.height() >= 60, "{img}");
    }
    // Charts are not blank: the correlation heatmap has many colours.
    let corr = image::open(out.join("correlations.png")).unwrap().to_rgb8();
    let mut colours: Vec<[u8; 3]> = corr.pixels().map(|p| p.0).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 20);
    assert!(summary.to_string().contains("120 movies"));

    // The numbers behind the charts are the data's.
    let movies = cinefuse_data::movie::read_movies(&dir.path().join("demo")).unwrap();
    let ratings: Vec<f64> = movies
        .iter()
        .filter_map(|m| m.rating.map(f64::from))
        .collect();
    let mean = ratings.iter().sum::<f64>() / ratings.len() as f64;
    assert!((summary.rating_mean.unwrap() - mean).abs() < 1e-9);
    let q = summary.rating_quartiles.unwrap();
    let (lo, hi) = ratings
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(*r), b.max(*r)));
    assert_eq!(
        (q[0], q[4]),
        (lo, hi),
        "quartiles run from the minimum to the maximum"
    );
    let years: Vec<i32> = movies.iter().filter_map(|m| m.year).collect();
    assert_eq!(
        summary.years,
        Some((*years.iter().min().unwrap(), *years.iter().max().unwrap()))
    );
    assert_eq!(
        summary.missing["plot"],
        movies.iter().filter(|m| m.plot.is_none()).count()
    );
    for (genre, count) in &summary.genres {
        let want = movies
            .iter()
            .filter(|m| m.genres.as_ref().is_some_and(|g| g.contains(genre)))
            .count();
        assert_eq!(*count, want, "{genre}");
    }
    let with_posters = movies
        .iter()
        .filter(|m| {
            m.poster
                .as_ref()
                .is_some_and(|p| dir.path().join("demo").join(p).exists())
        })
        .count();
    assert_eq!(summary.posters_readable, with_posters);
}

#[test]
fn run_report_writes_curves_genres_and_the_rating_scatter() {
    let dir = tempfile::tempdir().unwrap();
    let history: Vec<CurvePoint> = (1..=4)
        .map(|e| {
            let x = e as f64;
            CurvePoint {
                epoch: e,
                train_loss: 1.0 / x,
                val_loss: 1.2 / x,
                val_micro_f1: 0.1 * x,
                val_macro_f1: 0.08 * x,
                val_top1: 0.15 * x,
                val_mae: 1.0 - 0.1 * x,
                val_within_10pct: 0.1 * x,
            }
        })
        .collect();
    let data = RunReportData {
        run_name: "t".into(),
        split: "test".into(),
        history,
        curves_of: String::new(),
        genres: vec![
            GenreConfusion {
                genre: "Drama".into(),
                threshold: 0.4,
                tp: 8,
                fp: 2,
                fn_: 2,
                tn: 8,
            },
            GenreConfusion {
                genre: "Comedy".into(),
                threshold: 0.5,
                tp: 1,
                fp: 0,
                fn_: 3,
                tn: 16,
            },
        ],
        ratings: vec![(6.0, 6.2), (7.5, 6.0), (3.0, 4.0)],
    };
    assert!((data.genres[0].f1() - 0.8).abs() < 1e-12);
    let images = write_run_report(dir.path(), &data).unwrap();
    assert_eq!(images.len(), 6);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for img in &images {
        assert!(html.contains(&format!("report/{img}")));
        image::open(dir.path().join("report").join(img)).unwrap();
    }
    assert!(html.contains("Learning curves") && html.contains("Predicted vs actual rating"));

    // The charts are drawn from the data: another loss curve and other genre counts give
    // other pictures, the same data the same ones.
    let png = |d: &std::path::Path, name: &str| std::fs::read(d.join("report").join(name)).unwrap();
    let again = tempfile::tempdir().unwrap();
    write_run_report(again.path(), &data).unwrap();
    let mut other = data.clone();
    for h in &mut other.history {
        h.val_loss = 0.5;
    }
    other.genres[1].tp = 4;
    other.genres[1].fn_ = 0;
    let changed = tempfile::tempdir().unwrap();
    write_run_report(changed.path(), &other).unwrap();
    for name in ["loss.png", "genre_f1.png"] {
        assert_eq!(
            png(dir.path(), name),
            png(again.path(), name),
            "{name}: deterministic"
        );
        assert_ne!(
            png(dir.path(), name),
            png(changed.path(), name),
            "{name} ignores its data"
        );
    }
}

#[test]
fn eda_describes_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let rating = 3.0 + (i % 10) as f64 * 0.5;
            let genre = if i % 2 == 0 { "Drama" } else { "Comedy" };
            serde_json::json!({
                "id": format!("m{i}"),
                "rating": rating,
                "genres": [genre],
                "extra": {
                    "score": format!("{}", 10.0 * rating + (i % 3) as f64),
                    "crew": if i % 4 == 0 { "ann, bo" } else { "cy" },
                    "note": if i % 5 == 0 { serde_json::Value::Null } else { "won a prize".into() },
                },
            })
            .to_string()
        })
        .collect();
    std::fs::write(data.join("movies.jsonl"), lines.join("\n")).unwrap();
    let out = dir.path().join("eda");
    let summary = write_eda(&data, &out).unwrap();
    assert!(summary.sections.contains(&"extra".to_string()));
    let field = |n: &str| summary.extra.iter().find(|f| f.name == n).unwrap();
    assert_eq!(
        (field("score").kind.as_str(), field("score").present),
        ("numeric", 40)
    );
    assert!(
        field("score").rating_r.unwrap() > 0.99,
        "{:?}",
        field("score")
    );
    assert_eq!(
        (field("crew").kind.as_str(), field("crew").distinct),
        ("list", 3)
    );
    assert_eq!(
        (field("note").kind.as_str(), field("note").present),
        ("text", 32)
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<section id=\"extra\">") && html.contains("extra-score.png"));
    image::open(out.join("extra-score.png")).unwrap();
}

/// Posters `prepare` would refuse are left out of the report, never read: a FIFO (opening it
/// to read blocked the report for good) and a link out of the dataset.
#[cfg(unix)]
#[test]
fn eda_skips_posters_that_are_fifos_or_leave_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("posters")).unwrap();
    let fifo = data.join("posters/fifo.png");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let outside = dir.path().join("outside.png");
    image::RgbImage::from_pixel(8, 12, image::Rgb([200, 0, 0]))
        .save(&outside)
        .unwrap();
    std::os::unix::fs::symlink(&outside, data.join("posters/out.png")).unwrap();
    let movie = |id: &str, poster: &str| {
        serde_json::json!({"id": id, "genres": ["Drama"], "rating": 6.0, "poster": poster})
            .to_string()
    };
    let lines = [
        movie("a", "posters/fifo.png"),
        movie("b", "posters/out.png"),
    ];
    std::fs::write(data.join("movies.jsonl"), lines.join("\n")).unwrap();
    let out = dir.path().join("eda");
    // In a thread, so that a regression fails the test instead of hanging it.
    let (send, receive) = std::sync::mpsc::channel();
    let (d, o) = (data.clone(), out.clone());
    std::thread::spawn(move || send.send(write_eda(&d, &o).map(|_| ())).unwrap());
    let result = receive.recv_timeout(std::time::Duration::from_secs(120));
    result.expect("the report finished").unwrap();
    assert!(out.join("index.html").is_file());
}
