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

/// A poster as `prepare` reads it: a regular file (a FIFO would block the report) inside the
/// dataset, within `prepare`'s default size limits; `None` for one it would refuse.
fn thumbnail(dataset: &Path, m: &Movie) -> Option<RgbImage> {
    let limits = cinefuse_data::prepare::PrepareConfig::default().poster_limits();
    let path = poster_path(dataset, m)?.ok()?;
    let img = cinefuse_data::validate::load_poster(&path, Some(dataset), limits).ok()?;
    Some(cinefuse_data::poster_cache::fit_poster(
        &img, THUMB.0, THUMB.1,
    ))
}

/// Writes the report into `out` (`index.html` + PNG charts) and returns the summary. The
/// folder is built aside and moved into place when complete; `out` must be new, empty or an
/// earlier EDA report, and never the dataset or a folder that contains it.
/// The report being written: the dataset's movies, the output folder and the page.
struct Eda<'a> {
    dataset: &'a Path,
    out: &'a Path,
    movies: &'a [Movie],
    page: Page,
    images: Vec<String>,
    sections: Vec<String>,
}

/// Mean RGB of a genre's readable posters, and how many there were.
type GenreColour = (String, [f64; 3], usize);

pub fn write_eda(dataset: &Path, out_dir: &Path) -> Result<EdaSummary> {
    let staging = StagingDir::new(out_dir, OutputKind::Eda, &[dataset])?;
    let movies = read_movies(dataset)?;
    let mut eda = Eda {
        dataset,
        out: staging.path(),
        movies: &movies,
        page: Page::new(&format!("cinefuse EDA — {}", dataset.display())),
        images: Vec::new(),
        sections: Vec::new(),
    };
    let missing = eda.missing_section()?;
    let ratings = eda.rating_section()?;
    let genre_counts = eda.genre_section()?;
    eda.correlation_section()?;
    let years = eda.years_section()?;
    let top_genres: Vec<String> = genre_counts
        .iter()
        .take(20)
        .map(|(g, _)| g.clone())
        .collect();
    let posters_readable = eda.poster_section(&top_genres)?;
    eda.people_section()?;
    let out = eda.out;
    let extra = crate::eda_extra::extra_section(
        &mut eda.page,
        out,
        &movies,
        &genre_counts,
        &mut eda.images,
    )?;
    if !extra.is_empty() {
        eda.sections.push("extra".to_string());
    }
    cinefuse_data::atomic::write_atomic(&out.join("index.html"), eda.page.render().as_bytes())?;
    let summary = EdaSummary {
        movies: movies.len(),
        missing,
        genres: genre_counts,
        rating_mean: (!ratings.is_empty())
            .then(|| ratings.iter().sum::<f64>() / ratings.len() as f64),
        rating_quartiles: quartiles(&ratings),
        years,
        posters_readable,
        images: eda.images,
        sections: eda.sections,
        extra,
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    staging.commit()?;
    Ok(summary)
}

/// The numeric columns the correlation matrix compares (logs of the heavy-tailed ones).
fn numeric_columns(movies: &[Movie]) -> Vec<(&'static str, Vec<Option<f64>>)> {
    let log = |v: Option<f64>| v.filter(|x| *x >= 0.0).map(|x| x.ln_1p());
    let column = |f: &dyn Fn(&Movie) -> Option<f64>| movies.iter().map(f).collect();
    vec![
        ("year", column(&|m| m.year.map(f64::from))),
        ("runtime", column(&|m| m.runtime_min.map(f64::from))),
        ("log votes", column(&|m| log(m.votes.map(|v| v as f64)))),
        ("log budget", column(&|m| log(m.budget))),
        ("log gross", column(&|m| log(m.gross))),
        (
            "plot words",
            column(&|m| m.plot.as_ref().map(|p| p.split_whitespace().count() as f64)),
        ),
        ("rating", column(&|m| m.rating.map(f64::from))),
    ]
}

/// One swatch of each genre's mean poster colour, side by side.
fn mean_colour_swatches(means: &[GenreColour]) -> RgbImage {
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
}

impl Eda<'_> {
    /// Starts section `id` of the page.
    fn begin(&mut self, id: &str, title: &str, text: &str) {
        self.sections.push(id.to_string());
        self.page.section(id, title, text);
    }

    fn img(&mut self, file: &str, alt: &str) {
        self.page.image(file, alt);
        self.images.push(file.to_string());
    }

    /// Counts and missing values per field.
    fn missing_section(&mut self) -> Result<BTreeMap<String, usize>> {
        let missing: BTreeMap<String, usize> = FIELDS
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    self.movies.iter().filter(|m| !m.has(f)).count(),
                )
            })
            .collect();
        self.begin(
            "missing",
            "Counts and missing values",
            &format!(
                "{} movies. Share of movies missing each field.",
                self.movies.len()
            ),
        );
        let fields: Vec<String> = missing.keys().cloned().collect();
        let shares: Vec<f64> = missing
            .values()
            .map(|v| 100.0 * *v as f64 / self.movies.len().max(1) as f64)
            .collect();
        charts::bar_chart(
            &self.out.join("missing.png"),
            "Missing values per field",
            "% of movies missing",
            &fields,
            &shares,
        )?;
        self.img("missing.png", "Share of movies missing each field");
        self.page.table(
            &["field", "present", "missing"],
            &missing
                .iter()
                .map(|(k, v)| {
                    vec![
                        k.clone(),
                        (self.movies.len() - v).to_string(),
                        v.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        self.page.end_section();
        Ok(missing)
    }

    /// The rating histogram; returns the ratings.
    fn rating_section(&mut self) -> Result<Vec<f64>> {
        let ratings: Vec<f64> = self
            .movies
            .iter()
            .filter_map(|m| m.rating.map(f64::from))
            .collect();
        self.begin(
            "rating",
            "Rating distribution",
            &format!("{} movies with a rating.", ratings.len()),
        );
        charts::histogram(
            &self.out.join("rating_hist.png"),
            "IMDb rating",
            "rating (0–10)",
            &ratings,
            20,
            0.0,
            10.0,
        )?;
        self.img("rating_hist.png", "Distribution of ratings");
        self.page.end_section();
        Ok(ratings)
    }

    /// Genre frequencies, rating by genre and co-occurrence; returns the genre counts.
    fn genre_section(&mut self) -> Result<Vec<(String, usize)>> {
        let genre_counts = counts(
            self.movies
                .iter()
                .flat_map(|m| m.genres.iter().flatten().map(String::as_str)),
        );
        let top_genres: Vec<String> = genre_counts
            .iter()
            .take(20)
            .map(|(g, _)| g.clone())
            .collect();
        self.begin(
            "genres",
            "Genres",
            "Frequencies, rating by genre and how genres co-occur.",
        );
        counts_chart(
            &self.out.join("genre_counts.png"),
            "Movies per genre",
            &genre_counts,
            usize::MAX,
        )?;
        self.img("genre_counts.png", "Number of movies per genre");
        let groups = self.ratings_by_genre(&top_genres);
        charts::box_plots(
            &self.out.join("rating_by_genre.png"),
            "Rating by genre",
            "genre (movies)",
            "rating",
            &groups,
        )?;
        self.img(
            "rating_by_genre.png",
            "Rating by genre (box: quartiles, whiskers: range)",
        );
        let co = self.genre_cooccurrence(&top_genres);
        charts::heatmap(
            &self.out.join("genre_cooccurrence.png"),
            "Genre co-occurrence (movies with both)",
            &top_genres,
            &top_genres,
            &co,
            None,
            0,
        )?;
        self.img(
            "genre_cooccurrence.png",
            "Movies carrying both genres; the diagonal is the genre's count",
        );
        self.page.end_section();
        Ok(genre_counts)
    }

    /// The ratings of the movies of each genre in `genres`.
    fn ratings_by_genre(&self, genres: &[String]) -> Vec<(String, Vec<f64>)> {
        genres
            .iter()
            .map(|g| {
                let v = self
                    .movies
                    .iter()
                    .filter(|m| m.genres.iter().flatten().any(|x| x == g))
                    .filter_map(|m| m.rating.map(f64::from))
                    .collect();
                (g.clone(), v)
            })
            .collect()
    }

    /// How many movies carry both genres, for each pair of `genres`.
    fn genre_cooccurrence(&self, genres: &[String]) -> Vec<Vec<f64>> {
        let both = |a: &String, b: &String| {
            self.movies
                .iter()
                .filter(|m| {
                    let g = m.genres.as_deref().unwrap_or_default();
                    g.contains(a) && g.contains(b)
                })
                .count() as f64
        };
        genres
            .iter()
            .map(|a| genres.iter().map(|b| both(a, b)).collect())
            .collect()
    }

    /// The correlation matrix of the numeric fields.
    fn correlation_section(&mut self) -> Result<()> {
        let numeric = numeric_columns(self.movies);
        let names: Vec<String> = numeric.iter().map(|(k, _)| k.to_string()).collect();
        let corr: Vec<Vec<f64>> = numeric
            .iter()
            .map(|(_, a)| numeric.iter().map(|(_, b)| pearson(a, b).0).collect())
            .collect();
        self.begin(
            "correlations",
            "Correlations of numeric features",
            "Pearson correlation over movies that have both values; grey cells have too few pairs.",
        );
        charts::heatmap(
            &self.out.join("correlations.png"),
            "Correlation matrix",
            &names,
            &names,
            &corr,
            Some((-1.0, 1.0)),
            2,
        )?;
        self.img(
            "correlations.png",
            "Pearson correlations (red positive, blue negative)",
        );
        self.page.end_section();
        Ok(())
    }

    /// Movies per year and plot lengths; returns the year range.
    fn years_section(&mut self) -> Result<Option<(i32, i32)>> {
        let years: Vec<i32> = self.movies.iter().filter_map(|m| m.year).collect();
        self.begin("years", "Movies per year and plot length", "");
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
                &self.out.join("movies_per_year.png"),
                "Movies per year",
                "year",
                "movies",
                &[("movies".into(), per_year)],
            )?;
            self.img("movies_per_year.png", "Number of movies per release year");
        }
        let words: Vec<f64> = self
            .movies
            .iter()
            .filter_map(|m| m.plot.as_ref().map(|p| p.split_whitespace().count() as f64))
            .collect();
        let max_words = words.iter().cloned().fold(10.0, f64::max);
        charts::histogram(
            &self.out.join("plot_length.png"),
            "Plot length",
            "words per plot",
            &words,
            30,
            0.0,
            max_words.ceil(),
        )?;
        self.img("plot_length.png", "Distribution of plot lengths in words");
        self.page.end_section();
        Ok(year_range)
    }

    /// Poster grids and mean colours of the top genres; returns how many posters are readable.
    fn poster_section(&mut self, top_genres: &[String]) -> Result<usize> {
        self.begin(
            "posters",
            "Posters by genre",
            "Up to 8 posters per genre, and the mean poster colour of each genre.",
        );
        let grid_genres: Vec<&String> = top_genres.iter().take(10).collect();
        let (grid, means) = self.poster_grid(&grid_genres);
        let readable = self
            .movies
            .iter()
            .filter(|m| poster_path(self.dataset, m).is_some_and(|p| p.is_ok_and(|p| p.exists())))
            .count();
        let path = self.out.join("poster_grid.png");
        grid.save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        self.page.paragraph(&format!(
            "Rows, top to bottom: {}.",
            grid_genres
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.img("poster_grid.png", "Poster samples, one row per genre");
        let path = self.out.join("poster_mean_colour.png");
        mean_colour_swatches(&means)
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        self.img(
            "poster_mean_colour.png",
            "Mean poster colour per genre (same order as the table)",
        );
        self.page.table(
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
        self.page.end_section();
        Ok(readable)
    }

    /// A grid of up to 8 posters per genre (a row each), and each genre's mean colour over
    /// its first 200 movies' readable posters.
    fn poster_grid(&self, grid_genres: &[&String]) -> (RgbImage, Vec<GenreColour>) {
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
            for m in self
                .movies
                .iter()
                .filter(|m| m.genres.iter().flatten().any(|x| x == *g))
                .take(200)
            {
                let Some(t) = thumbnail(self.dataset, m) else {
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
        (grid, means)
    }

    /// Top directors and certificates.
    fn people_section(&mut self) -> Result<()> {
        self.begin("people", "Top directors and certificates", "");
        let directors = counts(
            self.movies
                .iter()
                .flat_map(|m| m.directors.iter().flatten().take(1).map(String::as_str)),
        );
        counts_chart(
            &self.out.join("top_directors.png"),
            "Directors with the most movies",
            &directors,
            15,
        )?;
        self.img("top_directors.png", "The 15 most frequent directors");
        let certs = counts(self.movies.iter().filter_map(|m| m.certificate.as_deref()));
        counts_chart(
            &self.out.join("certificates.png"),
            "Certificates",
            &certs,
            15,
        )?;
        self.img("certificates.png", "Movies per certificate");
        self.page.end_section();
        Ok(())
    }
}
