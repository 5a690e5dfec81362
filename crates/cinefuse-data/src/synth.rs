//! `cinefuse synth`: a deterministic synthetic multimodal movie dataset with learnable signal
//! in every modality. Some genres are visible only on the poster (Horror, Animation, Sci-Fi,
//! Western), some only in the plot (Romance, Documentary, Thriller, Comedy) and two in both
//! (Action, Drama), so a fused model must beat every single modality. The rating depends
//! nonlinearly on metadata (director quality, year, runtime, votes) and on the genres.

use std::path::Path;

use image::{Rgb, RgbImage};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::DataError;
use crate::atomic::{StagingDir, write_atomic};
use crate::movie::{MOVIES_FILE, Movie, POSTERS_DIR, movies_to_jsonl};
use crate::output_dir::OutputKind;

pub const POSTER_WIDTH: u32 = 96;
pub const POSTER_HEIGHT: u32 = 144;

/// (genre, prior probability, visible on poster, visible in plot)
const GENRES: [(&str, f64, bool, bool); 10] = [
    ("Drama", 0.42, true, true),
    ("Comedy", 0.33, false, true),
    ("Action", 0.22, true, true),
    ("Thriller", 0.18, false, true),
    ("Romance", 0.16, false, true),
    ("Horror", 0.14, true, false),
    ("Sci-Fi", 0.12, true, false),
    ("Animation", 0.10, true, false),
    ("Documentary", 0.08, false, true),
    ("Western", 0.07, true, false),
];

fn genre_words(genre: &str) -> &'static [&'static str] {
    match genre {
        "Drama" => &[
            "family",
            "grief",
            "struggle",
            "memories",
            "redemption",
            "illness",
            "estranged",
            "sacrifice",
            "trauma",
            "forgiveness",
            "widow",
            "inheritance",
        ],
        "Comedy" => &[
            "hilarious",
            "prank",
            "misadventures",
            "awkward",
            "wacky",
            "bumbling",
            "slapstick",
            "goofy",
            "jokes",
            "mishap",
            "roommate",
            "clumsy",
        ],
        "Action" => &[
            "explosion",
            "mission",
            "battle",
            "combat",
            "rescue",
            "soldier",
            "firefight",
            "commando",
            "showdown",
            "weapons",
            "chase",
            "mercenary",
        ],
        "Thriller" => &[
            "conspiracy",
            "suspense",
            "hostage",
            "betrayal",
            "deadly",
            "secret",
            "paranoia",
            "stalker",
            "blackmail",
            "kidnapping",
            "cover-up",
            "witness",
        ],
        "Romance" => &[
            "love",
            "heart",
            "wedding",
            "kiss",
            "passion",
            "lovers",
            "courtship",
            "sweetheart",
            "affair",
            "longing",
            "proposal",
            "soulmate",
        ],
        "Documentary" => &[
            "footage",
            "interviews",
            "archival",
            "examines",
            "chronicles",
            "investigation",
            "journalists",
            "testimony",
            "filmmaker",
            "explores",
            "real-life",
            "portrait",
        ],
        _ => &[],
    }
}

const FILLER: [&str; 48] = [
    "a",
    "the",
    "young",
    "man",
    "woman",
    "town",
    "city",
    "life",
    "finds",
    "must",
    "after",
    "when",
    "his",
    "her",
    "their",
    "friends",
    "years",
    "journey",
    "story",
    "world",
    "new",
    "old",
    "small",
    "begins",
    "discovers",
    "home",
    "past",
    "together",
    "against",
    "everything",
    "one",
    "night",
    "summer",
    "two",
    "brother",
    "sister",
    "father",
    "mother",
    "strange",
    "across",
    "country",
    "returns",
    "decides",
    "team",
    "group",
    "local",
    "soon",
    "changes",
];

const FIRST: [&str; 24] = [
    "Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kaya",
    "Luca", "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Yusuf",
];
const LAST: [&str; 20] = [
    "Abbott", "Berg", "Costa", "Duval", "Eklund", "Ferrari", "Garcia", "Hoffman", "Ivanova",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi",
    "Sato", "Tanaka",
];
const ADJ: [&str; 16] = [
    "Silent", "Last", "Golden", "Broken", "Hidden", "Crimson", "Endless", "Lost", "Wild", "Final",
    "Distant", "Bright", "Cold", "Secret", "Burning", "Quiet",
];
const NOUN: [&str; 16] = [
    "River", "Road", "Summer", "Horizon", "Garden", "Signal", "Harbor", "Mirror", "Winter",
    "Crown", "Storm", "Letter", "Bridge", "Shadow", "Echo", "Frontier",
];

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller: rand_distr is not worth a dependency for one distribution.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

struct Director {
    name: String,
    quality: f64,
}

fn person(rng: &mut StdRng) -> String {
    format!(
        "{} {}",
        FIRST.choose(rng).unwrap(),
        LAST.choose(rng).unwrap()
    )
}

fn sample_genres(rng: &mut StdRng) -> Vec<&'static str> {
    let mut picked: Vec<&'static str> = GENRES
        .iter()
        .filter(|(_, p, _, _)| rng.random::<f64>() < *p)
        .map(|(g, _, _, _)| *g)
        .collect();
    if picked.is_empty() {
        picked.push(if rng.random::<f64>() < 0.55 {
            "Drama"
        } else {
            "Comedy"
        });
    }
    while picked.len() > 3 {
        let i = rng.random_range(0..picked.len());
        picked.remove(i);
    }
    picked
}

fn make_plot(rng: &mut StdRng, genres: &[&str]) -> String {
    let textual: Vec<&str> = genres
        .iter()
        .copied()
        .filter(|g| GENRES.iter().any(|(n, _, _, t)| n == g && *t))
        .collect();
    let n_sentences = rng.random_range(2..=4);
    let mut sentences = Vec::new();
    for _ in 0..n_sentences {
        let n_words = rng.random_range(6..=11);
        let mut words: Vec<&str> = (0..n_words).map(|_| *FILLER.choose(rng).unwrap()).collect();
        // Genre words for this movie's plot-visible genres, plus occasional noise words.
        for g in &textual {
            if rng.random::<f64>() < 0.55 {
                let pos = rng.random_range(0..=words.len());
                words.insert(pos, genre_words(g).choose(rng).unwrap());
            }
        }
        if rng.random::<f64>() < 0.12 {
            let (g, _, _, _) = GENRES[rng.random_range(0..GENRES.len())];
            if let Some(w) = genre_words(g).choose(rng) {
                let pos = rng.random_range(0..=words.len());
                words.insert(pos, w);
            }
        }
        let mut s = words.join(" ");
        if let Some(first) = s.get(0..1) {
            s = first.to_uppercase() + &s[1..];
        }
        sentences.push(s + ".");
    }
    sentences.join(" ")
}

fn blend(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [
        a[0] * (1.0 - t) + b[0] * t,
        a[1] * (1.0 - t) + b[1] * t,
        a[2] * (1.0 - t) + b[2] * t,
    ]
}

fn make_poster(rng: &mut StdRng, genres: &[&str]) -> RgbImage {
    let has = |g: &str| genres.contains(&g);
    let base = base_colour(rng, &has);
    let mut p = Canvas::filled(base);
    p.distractors(rng);
    // Each poster-visible genre draws its motif, in this order (the draws of the generator
    // follow it, so a seed gives the same posters).
    if has("Action") {
        p.warning_stripes(rng);
    }
    if has("Animation") {
        p.bubbles(rng);
    }
    if has("Sci-Fi") {
        p.grid(rng);
    }
    if has("Western") {
        p.sunset(rng);
    }
    if has("Horror") {
        p.vignette();
    }
    p.block_noise(rng);
    p.img
}

/// Base colour: random, then pulled towards each poster-visible genre's palette.
fn base_colour(rng: &mut StdRng, has: &dyn Fn(&str) -> bool) -> [f64; 3] {
    let mut base = [
        rng.random::<f64>() * 200.0 + 30.0,
        rng.random::<f64>() * 200.0 + 30.0,
        rng.random::<f64>() * 200.0 + 30.0,
    ];
    if has("Sci-Fi") {
        base = blend(base, [30.0, 60.0, 200.0], 0.7);
    }
    if has("Western") {
        base = blend(base, [210.0, 140.0, 60.0], 0.7);
    }
    if has("Animation") {
        base = blend(base, [250.0, 220.0, 80.0], 0.6);
    }
    if has("Drama") {
        let g = (base[0] + base[1] + base[2]) / 3.0;
        base = blend(base, [g, g, g], 0.6);
    }
    if has("Horror") {
        base = blend(base, [90.0, 5.0, 10.0], 0.55);
    }
    base
}

/// A poster being drawn; pixels outside it are ignored.
struct Canvas {
    img: RgbImage,
    w: i32,
    h: i32,
}

impl Canvas {
    fn filled(c: [f64; 3]) -> Self {
        let (w, h) = (POSTER_WIDTH as i32, POSTER_HEIGHT as i32);
        let img = RgbImage::from_fn(w as u32, h as u32, |_, _| {
            Rgb([c[0] as u8, c[1] as u8, c[2] as u8])
        });
        Self { img, w, h }
    }

    fn put(&mut self, x: i32, y: i32, c: [f64; 3]) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let px = c.map(|v| v.clamp(0.0, 255.0) as u8);
            self.img.put_pixel(x as u32, y as u32, Rgb(px));
        }
    }

    fn get(&self, x: i32, y: i32) -> [f64; 3] {
        self.img.get_pixel(x as u32, y as u32).0.map(f64::from)
    }

    fn disc(&mut self, (cx, cy): (i32, i32), r: i32, ys: std::ops::Range<i32>, c: [f64; 3]) {
        for y in ys {
            for x in cx - r..=cx + r {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                    self.put(x, y, c);
                }
            }
        }
    }

    /// Random rectangles, on every poster.
    fn distractors(&mut self, rng: &mut StdRng) {
        for _ in 0..rng.random_range(1..=3) {
            let (x0, y0) = (rng.random_range(0..self.w), rng.random_range(0..self.h));
            let (rw, rh) = (rng.random_range(8..40), rng.random_range(8..40));
            let c = [
                rng.random::<f64>() * 255.0,
                rng.random::<f64>() * 255.0,
                rng.random::<f64>() * 255.0,
            ];
            for y in y0..y0 + rh {
                for x in x0..x0 + rw {
                    self.put(x, y, c);
                }
            }
        }
    }

    /// Action: diagonal warning stripes on the lower half.
    fn warning_stripes(&mut self, rng: &mut StdRng) {
        let phase = rng.random_range(0..16);
        for y in 0..self.h {
            for x in 0..self.w {
                if ((x + y + phase) / 8) % 2 == 0 && y > self.h / 2 {
                    self.put(x, y, [230.0, 200.0, 20.0]);
                }
            }
        }
    }

    /// Animation: bright discs.
    fn bubbles(&mut self, rng: &mut StdRng) {
        for _ in 0..rng.random_range(3..=6) {
            let (cx, cy, r) = (
                rng.random_range(0..self.w),
                rng.random_range(0..self.h),
                rng.random_range(6..16),
            );
            let c = [
                rng.random_range(150.0..255.0),
                rng.random_range(100.0..255.0),
                rng.random_range(150.0..255.0),
            ];
            self.disc((cx, cy), r, cy - r..cy + r + 1, c);
        }
    }

    /// Sci-Fi: a cyan grid.
    fn grid(&mut self, rng: &mut StdRng) {
        let step = rng.random_range(10..16);
        for y in 0..self.h {
            for x in 0..self.w {
                if x % step == 0 || y % step == 0 {
                    self.put(x, y, [120.0, 220.0, 255.0]);
                }
            }
        }
    }

    /// Western: brown ground and a setting sun on the horizon.
    fn sunset(&mut self, rng: &mut StdRng) {
        let horizon = rng.random_range(self.h / 2..3 * self.h / 4);
        let (cx, r) = (rng.random_range(20..self.w - 20), 12);
        for y in horizon..self.h {
            for x in 0..self.w {
                self.put(x, y, [120.0, 70.0, 30.0]);
            }
        }
        self.disc((cx, horizon), r, horizon - r..horizon, [255.0, 120.0, 40.0]);
    }

    /// Horror: a dark vignette.
    fn vignette(&mut self) {
        let (cx, cy) = (self.w as f64 / 2.0, self.h as f64 / 2.0);
        for y in 0..self.h {
            for x in 0..self.w {
                let d = (((x as f64 - cx) / cx).powi(2) + ((y as f64 - cy) / cy).powi(2)).sqrt();
                let k = (1.0 - 0.8 * d).clamp(0.1, 1.0);
                let p = self.get(x, y);
                self.put(x, y, p.map(|v| v * k));
            }
        }
    }

    /// Blocky noise (4×4 blocks keep the PNGs small).
    fn block_noise(&mut self, rng: &mut StdRng) {
        for by in 0..self.h / 4 {
            for bx in 0..self.w / 4 {
                let n = normal(rng) * 12.0;
                for y in by * 4..by * 4 + 4 {
                    for x in bx * 4..bx * 4 + 4 {
                        let p = self.get(x, y);
                        self.put(x, y, p.map(|v| v + n));
                    }
                }
            }
        }
    }
}

/// Generates `n` movies. Pure function of `(n, seed)`.
pub fn generate(n: usize, seed: u64) -> Vec<(Movie, Option<RgbImage>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let directors: Vec<Director> = (0..120)
        .map(|_| Director {
            name: person(&mut rng),
            quality: normal(&mut rng) * 0.8,
        })
        .collect();
    let actors: Vec<String> = (0..300).map(|_| person(&mut rng)).collect();
    (0..n)
        .map(|i| synth_movie(&mut rng, i, &directors, &actors))
        .collect()
}

/// Movie `i` and its poster (none when the poster is "missing").
fn synth_movie(
    rng: &mut StdRng,
    i: usize,
    directors: &[Director],
    actors: &[String],
) -> (Movie, Option<RgbImage>) {
    let genres = sample_genres(rng);
    let has = |g: &str| genres.contains(&g);
    let director = directors.choose(rng).unwrap();
    let year = rng.random_range(1950..=2022);
    let runtime = runtime_of(rng, &has);
    let votes = (9.0 + 1.4 * normal(rng) + 0.6 * director.quality)
        .exp()
        .round()
        .max(5.0);
    let rating = rating_of(rng, &has, director.quality, year, runtime, votes);
    let (certificate, language, country) = certificate_language_country(rng, &has);
    let id = format!("syn{:06}", i + 1);
    let miss = |rng: &mut StdRng, p: f64| rng.random::<f64>() < p;
    let cast: Vec<String> = (0..rng.random_range(2..=4))
        .map(|_| actors.choose(rng).unwrap().clone())
        .collect();
    let budget = (!miss(rng, 0.6)).then(|| (15.5 + normal(rng)).exp().round());
    let gross = budget
        .filter(|_| rng.random::<f64>() < 0.85)
        .map(|b| (b * (0.3 + rating / 3.0) * (0.5 + rng.random::<f64>())).round());
    let plot = make_plot(rng, &genres);
    let poster = make_poster(rng, &genres);
    let poster_missing = miss(rng, 0.08);
    let plot_missing = miss(rng, 0.08);
    let movie = Movie {
        title: Some(format!(
            "The {} {}",
            ADJ.choose(rng).unwrap(),
            NOUN.choose(rng).unwrap()
        )),
        year: (!miss(rng, 0.03)).then_some(year),
        runtime_min: (!miss(rng, 0.05)).then_some(runtime as f32),
        genres: Some(genres.iter().map(|g| g.to_string()).collect()),
        rating: (!miss(rng, 0.01)).then_some(rating as f32),
        votes: (!miss(rng, 0.04)).then_some(votes as u64),
        certificate: (!miss(rng, 0.10)).then(|| certificate.to_string()),
        languages: (!miss(rng, 0.03)).then(|| vec![language.to_string()]),
        countries: (!miss(rng, 0.03)).then(|| vec![country.to_string()]),
        directors: (!miss(rng, 0.03)).then(|| vec![director.name.clone()]),
        cast: (!miss(rng, 0.05)).then_some(cast),
        plot: (!plot_missing).then_some(plot),
        poster: (!poster_missing).then(|| format!("{POSTERS_DIR}/{id}.png")),
        budget,
        gross,
        id,
        extra: Default::default(),
    };
    (movie, (!poster_missing).then_some(poster))
}

/// Runtime in minutes: a genre-dependent mean plus noise.
fn runtime_of(rng: &mut StdRng, has: &dyn Fn(&str) -> bool) -> f64 {
    let mut runtime = 95.0 + normal(rng) * 12.0;
    for (g, d) in [
        ("Drama", 14.0),
        ("Action", 10.0),
        ("Animation", -14.0),
        ("Documentary", -6.0),
        ("Horror", -5.0),
    ] {
        if has(g) {
            runtime += d;
        }
    }
    runtime.clamp(60.0, 200.0).round()
}

/// The rating: director quality, era, runtime, popularity, genre and noise, to one decimal.
fn rating_of(
    rng: &mut StdRng,
    has: &dyn Fn(&str) -> bool,
    quality: f64,
    year: i32,
    runtime: f64,
    votes: f64,
) -> f64 {
    let mut rating = 6.0 + quality + 0.5 * ((year - 1950) as f64 / 10.0).sin()
        - 0.00025 * (runtime - 125.0).powi(2)
        + 0.18 * (votes.log10() - 4.0)
        + normal(rng) * 0.3;
    for (g, d) in [
        ("Documentary", 0.7),
        ("Drama", 0.3),
        ("Horror", -0.8),
        ("Comedy", -0.2),
        ("Animation", 0.3),
    ] {
        if has(g) {
            rating += d;
        }
    }
    (rating.clamp(1.0, 9.8) * 10.0).round() / 10.0
}

/// Certificate, language and country, shaped by the genres.
fn certificate_language_country(
    rng: &mut StdRng,
    has: &dyn Fn(&str) -> bool,
) -> (&'static str, &'static str, &'static str) {
    let certificate = if has("Animation") {
        *["G", "PG"].choose(rng).unwrap()
    } else if (has("Horror") || has("Thriller")) && rng.random::<f64>() < 0.7 {
        "R"
    } else {
        *["PG", "PG-13", "R", "Not Rated"].choose(rng).unwrap()
    };
    let language = if has("Animation") && rng.random::<f64>() < 0.4 {
        "Japanese"
    } else {
        *[
            "English", "English", "English", "English", "French", "Spanish", "German",
        ]
        .choose(rng)
        .unwrap()
    };
    let country = match language {
        "Japanese" => "Japan",
        "French" => "France",
        "Spanish" => "Spain",
        "German" => "Germany",
        _ => *["USA", "USA", "USA", "UK", "Canada"].choose(rng).unwrap(),
    };
    (certificate, language, country)
}

/// The most movies one synthetic dataset may hold: they are generated in memory first (about
/// 41 kB of poster pixels each, so 4 GB at the cap), and a typo must not abort on allocation.
pub const MAX_SYNTH_MOVIES: usize = 100_000;

/// Writes a generated dataset to `out_dir` (replacing it atomically when complete).
pub fn write_synthetic(out_dir: &Path, n: usize, seed: u64) -> Result<usize, DataError> {
    if !(1..=MAX_SYNTH_MOVIES).contains(&n) {
        return Err(DataError::Invalid(format!(
            "{n} synthetic movies: expected 1..={MAX_SYNTH_MOVIES}"
        )));
    }
    let staging = StagingDir::new(out_dir, OutputKind::Dataset, &[])?;
    let posters = staging.path().join(POSTERS_DIR);
    std::fs::create_dir_all(&posters).map_err(|e| DataError::io(&posters, e))?;
    let items = generate(n, seed);
    let pb = ProgressBar::new(items.len() as u64);
    let mut movies = Vec::with_capacity(items.len());
    for (movie, poster) in items {
        if let (Some(img), Some(rel)) = (poster, movie.poster.as_deref()) {
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| DataError::Invalid(format!("png encoding: {e}")))?;
            // The staging directory is renamed into place only when complete, so plain writes suffice.
            let path = staging.path().join(rel);
            std::fs::write(&path, &png).map_err(|e| DataError::io(&path, e))?;
        }
        movies.push(movie);
        pb.inc(1);
    }
    pb.finish_and_clear();
    write_atomic(
        &staging.path().join(MOVIES_FILE),
        movies_to_jsonl(&movies).as_bytes(),
    )?;
    staging.commit()?;
    Ok(movies.len())
}
