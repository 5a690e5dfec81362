//! `cinefuse eda`: an exploratory report of a dataset — counts and missingness, rating and
//! genre distributions, genre co-occurrence, numeric correlations, movies per year, plot
//! lengths, poster grids and mean poster colours per genre, top directors and certificates.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use cinefuse_data::Movie;
use cinefuse_data::atomic::StagingDir;
use cinefuse_data::movie::{FIELDS, poster_path, read_movies};
use cinefuse_data::output_dir::OutputKind;
use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::charts;
use crate::html::Page;
use crate::stats::{pearson, quartiles};

#[derive(Debug, Clone, Serialize)]
pub struct EdaSummary {
    pub movies: usize,
    pub missing: BTreeMap<String, usize>,
    pub genres: Vec<(String, usize)>,
    pub rating_mean: Option<f64>,
    pub rating_quartiles: Option<[f64; 5]>,
    pub years: Option<(i32, i32)>,
    pub posters_readable: usize,
    pub images: Vec<String>,
    pub sections: Vec<String>,
    /// The dataset's `extra` fields, when it has any.
    pub extra: Vec<crate::eda_extra::ExtraField>,
}

impl std::fmt::Display for EdaSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} movies; {} posters readable",
            self.movies, self.posters_readable
        )?;
        if let (Some(m), Some(q)) = (self.rating_mean, self.rating_quartiles) {
            writeln!(
                f,
                "rating: mean {m:.2}, median {:.1}, range {:.1}–{:.1}",
                q[2], q[0], q[4]
            )?;
        }
        if let Some((a, b)) = self.years {
            writeln!(f, "years: {a}–{b}")?;
        }
        let top: Vec<String> = self
            .genres
            .iter()
            .take(8)
            .map(|(g, n)| format!("{g} {n}"))
            .collect();
        writeln!(f, "genres ({}): {}", self.genres.len(), top.join(", "))?;
        let missing: Vec<String> = self
            .missing
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {:.0} %", 100.0 * *n as f64 / self.movies.max(1) as f64))
            .collect();
        write!(f, "missing: {}", missing.join(", "))
    }
}

fn counts<'a>(items: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for i in items {
        *m.entry(i.to_string()).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A bar chart of movies per name from [`counts`]: its first `limit` rows.
fn counts_chart(path: &Path, title: &str, counts: &[(String, usize)], limit: usize) -> Result<()> {
    let top = &counts[..counts.len().min(limit)];
    charts::bar_chart(
        path,
        title,
        "movies",
        &top.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        &top.iter().map(|c| c.1 as f64).collect::<Vec<_>>(),
    )
}

const THUMB: (u32, u32) = (60, 90);

fn thumbnail(dataset: &Path, m: &Movie) -> Option<RgbImage> {
    let img = image::open(poster_path(dataset, m)?.ok()?).ok()?;
    Some(cinefuse_data::poster_cache::fit_poster(
        &img, THUMB.0, THUMB.1,
    ))
}

/// Writes the report into `out` (`index.html` + PNG charts) and returns the summary. The
/// folder is built aside and moved into place when complete; `out` must be new, empty or an
/// earlier EDA report, and never the dataset or a folder that contains it.
pub fn write_eda(dataset: &Path, out_dir: &Path) -> Result<EdaSummary> {
    let staging = StagingDir::new(out_dir, OutputKind::Eda, &[dataset])?;
    let movies = read_movies(dataset)?;
    let out = staging.path();
    let n = movies.len();
    let mut page = Page::new(&format!("cinefuse EDA — {}", dataset.display()));
    let mut images = Vec::new();
    let mut sections = Vec::new();
    let mut img = |page: &mut Page, file: &str, alt: &str| {
        page.image(file, alt);
        images.push(file.to_string());
    };

    // 1. Counts and missingness.
    let missing: BTreeMap<String, usize> = FIELDS
        .iter()
        .map(|f| (f.to_string(), movies.iter().filter(|m| !m.has(f)).count()))
        .collect();
    sections.push("missing".to_string());
    page.section(
        "missing",
        "Counts and missing values",
        &format!("{n} movies. Share of movies missing each field."),
    );
    let fields: Vec<String> = missing.keys().cloned().collect();
    let shares: Vec<f64> = missing
        .values()
        .map(|v| 100.0 * *v as f64 / n.max(1) as f64)
        .collect();
    charts::bar_chart(
        &out.join("missing.png"),
        "Missing values per field",
        "% of movies missing",
        &fields,
        &shares,
    )?;
    img(
        &mut page,
        "missing.png",
        "Share of movies missing each field",
    );
    page.table(
        &["field", "present", "missing"],
        &missing
            .iter()
            .map(|(k, v)| vec![k.clone(), (n - v).to_string(), v.to_string()])
            .collect::<Vec<_>>(),
    );
    page.end_section();

    // 2. Ratings.
    let ratings: Vec<f64> = movies
        .iter()
        .filter_map(|m| m.rating.map(f64::from))
        .collect();
    sections.push("rating".to_string());
    page.section(
        "rating",
        "Rating distribution",
        &format!("{} movies with a rating.", ratings.len()),
    );
    charts::histogram(
        &out.join("rating_hist.png"),
        "IMDb rating",
        "rating (0–10)",
        &ratings,
        20,
        0.0,
        10.0,
    )?;
    img(&mut page, "rating_hist.png", "Distribution of ratings");
    page.end_section();

    // 3. Genres: frequencies, rating by genre, co-occurrence.
    let genre_counts = counts(
        movies
            .iter()
            .flat_map(|m| m.genres.iter().flatten().map(String::as_str)),
    );
    let top_genres: Vec<String> = genre_counts
        .iter()
        .take(20)
        .map(|(g, _)| g.clone())
        .collect();
    sections.push("genres".to_string());
    page.section(
        "genres",
        "Genres",
        "Frequencies, rating by genre and how genres co-occur.",
    );
    counts_chart(
        &out.join("genre_counts.png"),
        "Movies per genre",
        &genre_counts,
        usize::MAX,
    )?;
    img(&mut page, "genre_counts.png", "Number of movies per genre");
    let groups: Vec<(String, Vec<f64>)> = top_genres
        .iter()
        .map(|g| {
            let v = movies
                .iter()
                .filter(|m| m.genres.iter().flatten().any(|x| x == g))
                .filter_map(|m| m.rating.map(f64::from))
                .collect();
            (g.clone(), v)
        })
        .collect();
    charts::box_plots(
        &out.join("rating_by_genre.png"),
        "Rating by genre",
        "genre (movies)",
        "rating",
        &groups,
    )?;
    img(
        &mut page,
        "rating_by_genre.png",
        "Rating by genre (box: quartiles, whiskers: range)",
    );
    let co: Vec<Vec<f64>> = top_genres
        .iter()
        .map(|a| {
            top_genres
                .iter()
                .map(|b| {
                    movies
                        .iter()
                        .filter(|m| {
                            let g = m.genres.as_deref().unwrap_or_default();
                            g.contains(a) && g.contains(b)
                        })
                        .count() as f64
                })
                .collect()
        })
        .collect();
    charts::heatmap(
        &out.join("genre_cooccurrence.png"),
        "Genre co-occurrence (movies with both)",
        &top_genres,
        &top_genres,
        &co,
        None,
        0,
    )?;
    img(
        &mut page,
        "genre_cooccurrence.png",
        "Movies carrying both genres; the diagonal is the genre's count",
    );
    page.end_section();

    // 4. Numeric correlations.
    let log = |v: Option<f64>| v.filter(|x| *x >= 0.0).map(|x| x.ln_1p());
    let numeric: Vec<(&str, Vec<Option<f64>>)> = vec![
        (
            "year",
            movies.iter().map(|m| m.year.map(f64::from)).collect(),
        ),
        (
            "runtime",
            movies
                .iter()
                .map(|m| m.runtime_min.map(f64::from))
                .collect(),
        ),
        (
            "log votes",
            movies
                .iter()
                .map(|m| log(m.votes.map(|v| v as f64)))
                .collect(),
        ),
        ("log budget", movies.iter().map(|m| log(m.budget)).collect()),
        ("log gross", movies.iter().map(|m| log(m.gross)).collect()),
        (
            "plot words",
            movies
                .iter()
                .map(|m| m.plot.as_ref().map(|p| p.split_whitespace().count() as f64))
                .collect(),
        ),
        (
            "rating",
            movies.iter().map(|m| m.rating.map(f64::from)).collect(),
        ),
    ];
    let names: Vec<String> = numeric.iter().map(|(k, _)| k.to_string()).collect();
    let corr: Vec<Vec<f64>> = numeric
        .iter()
        .map(|(_, a)| numeric.iter().map(|(_, b)| pearson(a, b).0).collect())
        .collect();
    sections.push("correlations".to_string());
    page.section(
        "correlations",
        "Correlations of numeric features",
        "Pearson correlation over movies that have both values; grey cells have too few pairs.",
    );
    charts::heatmap(
        &out.join("correlations.png"),
        "Correlation matrix",
        &names,
        &names,
        &corr,
        Some((-1.0, 1.0)),
        2,
    )?;
    img(
        &mut page,
        "correlations.png",
        "Pearson correlations (red positive, blue negative)",
    );
    page.end_section();

    // 5. Years and plot lengths.
    let years: Vec<i32> = movies.iter().filter_map(|m| m.year).collect();
    sections.push("years".to_string());
    page.section("years", "Movies per year and plot length", "");
    let year_range = years
        .iter()
        .min()
        .zip(years.iter().max())
        .map(|(a, b)| (*a, *b));
    if let Some((a, b)) = year_range {
        let per_year: Vec<(f64, f64)> = (a..=b)
            .map(|y| {
                (
                    f64::from(y),
                    years.iter().filter(|x| **x == y).count() as f64,
                )
            })
            .collect();
        charts::lines(
            &out.join("movies_per_year.png"),
            "Movies per year",
            "year",
            "movies",
            &[("movies".into(), per_year)],
        )?;
        img(
            &mut page,
            "movies_per_year.png",
            "Number of movies per release year",
        );
    }
    let words: Vec<f64> = movies
        .iter()
        .filter_map(|m| m.plot.as_ref().map(|p| p.split_whitespace().count() as f64))
        .collect();
    let max_words = words.iter().cloned().fold(10.0, f64::max);
    charts::histogram(
        &out.join("plot_length.png"),
        "Plot length",
        "words per plot",
        &words,
        30,
        0.0,
        max_words.ceil(),
    )?;
    img(
        &mut page,
        "plot_length.png",
        "Distribution of plot lengths in words",
    );
    page.end_section();

    // 6. Posters: a grid per genre and the mean colour per genre.
    sections.push("posters".to_string());
    page.section(
        "posters",
        "Posters by genre",
        "Up to 8 posters per genre, and the mean poster colour of each genre.",
    );
    let mut readable = 0usize;
    let grid_genres: Vec<&String> = top_genres.iter().take(10).collect();
    let (tw, th) = THUMB;
    let mut grid = RgbImage::from_pixel(
        tw * 8 + 9 * 4,
        (th + 4) * grid_genres.len().max(1) as u32 + 4,
        Rgb([255, 255, 255]),
    );
    let mut means: Vec<(String, [f64; 3], usize)> = Vec::new();
    for (row, g) in grid_genres.iter().enumerate() {
        let mut sum = [0.0f64; 3];
        let mut k = 0usize;
        let mut placed = 0u32;
        for m in movies
            .iter()
            .filter(|m| m.genres.iter().flatten().any(|x| x == *g))
            .take(200)
        {
            let Some(t) = thumbnail(dataset, m) else {
                continue;
            };
            k += 1;
            for p in t.pixels() {
                for (s, v) in sum.iter_mut().zip(p.0) {
                    *s += f64::from(v);
                }
            }
            if placed < 8 {
                image::imageops::overlay(
                    &mut grid,
                    &t,
                    i64::from(4 + placed * (tw + 4)),
                    i64::from(4 + row as u32 * (th + 4)),
                );
                placed += 1;
            }
        }
        let px = f64::from(tw * th);
        means.push((g.to_string(), sum.map(|s| s / (px * k.max(1) as f64)), k));
    }
    readable += movies
        .iter()
        .filter(|m| poster_path(dataset, m).is_some_and(|p| p.is_ok_and(|p| p.exists())))
        .count();
    grid.save(out.join("poster_grid.png"))
        .context("writing poster_grid.png")?;
    page.paragraph(&format!(
        "Rows, top to bottom: {}.",
        grid_genres
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    img(
        &mut page,
        "poster_grid.png",
        "Poster samples, one row per genre",
    );
    let mut swatches =
        RgbImage::from_pixel(80 * means.len().max(1) as u32, 80, Rgb([255, 255, 255]));
    for (i, (_, c, _)) in means.iter().enumerate() {
        for y in 0..80 {
            for x in 0..76 {
                swatches.put_pixel(i as u32 * 80 + x, y, Rgb(c.map(|v| v.round() as u8)));
            }
        }
    }
    swatches
        .save(out.join("poster_mean_colour.png"))
        .context("writing poster_mean_colour.png")?;
    img(
        &mut page,
        "poster_mean_colour.png",
        "Mean poster colour per genre (same order as the table)",
    );
    page.table(
        &["genre", "posters", "mean R", "mean G", "mean B"],
        &means
            .iter()
            .map(|(g, c, k)| {
                vec![
                    g.clone(),
                    k.to_string(),
                    format!("{:.0}", c[0]),
                    format!("{:.0}", c[1]),
                    format!("{:.0}", c[2]),
                ]
            })
            .collect::<Vec<_>>(),
    );
    page.end_section();

    // 7. Directors and certificates.
    sections.push("people".to_string());
    page.section("people", "Top directors and certificates", "");
    let directors = counts(
        movies
            .iter()
            .flat_map(|m| m.directors.iter().flatten().take(1).map(String::as_str)),
    );
    counts_chart(
        &out.join("top_directors.png"),
        "Directors with the most movies",
        &directors,
        15,
    )?;
    img(
        &mut page,
        "top_directors.png",
        "The 15 most frequent directors",
    );
    let certs = counts(movies.iter().filter_map(|m| m.certificate.as_deref()));
    counts_chart(&out.join("certificates.png"), "Certificates", &certs, 15)?;
    img(&mut page, "certificates.png", "Movies per certificate");
    page.end_section();

    let extra =
        crate::eda_extra::extra_section(&mut page, out, &movies, &genre_counts, &mut images)?;
    if !extra.is_empty() {
        sections.push("extra".to_string());
    }
    std::fs::write(out.join("index.html"), page.render()).context("writing index.html")?;
    let summary = EdaSummary {
        movies: n,
        missing,
        genres: genre_counts,
        rating_mean: (!ratings.is_empty())
            .then(|| ratings.iter().sum::<f64>() / ratings.len() as f64),
        rating_quartiles: quartiles(&ratings),
        years: year_range,
        posters_readable: readable,
        images,
        sections,
        extra,
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    staging.commit()?;
    Ok(summary)
}
