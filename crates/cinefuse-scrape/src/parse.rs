//! Title-page parsing, most robust source first: the JSON-LD block, then Next.js
//! `__NEXT_DATA__`, then CSS selectors for the legacy (schema.org microdata) layout. Each later
//! source only fills fields the earlier ones left empty.

use cinefuse_data::Movie;
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

use crate::normalize::{clean_text, money, runtime_minutes, vote_count};

/// What a title page yields.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTitle {
    pub movie: Movie,
    pub poster_url: Option<String>,
    /// Which sources contributed: "json-ld", "next-data", "legacy".
    pub sources: Vec<&'static str>,
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("valid selector")
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(clean_text(s)).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => a.first().and_then(text_of),
        _ => None,
    }
}

fn num_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', "").parse().ok(),
        Value::Array(a) => a.first().and_then(num_of),
        _ => None,
    }
}

/// A count as a whole non-negative number: a negative or non-finite one is unknown (as a
/// vote count written as text is), not 0.
fn count_of(x: f64) -> Option<u64> {
    (x.is_finite() && x >= 0.0).then(|| x.round() as u64)
}

/// A year as a whole number that fits the field: a fraction or a number past i32 is unknown
/// (as a year written as text is), not truncated or saturated. A whole year no movie can have
/// (20000) is kept, for `check_movie` to report the page with it.
fn whole_year(y: f64) -> Option<i32> {
    (y.fract() == 0.0 && y.abs() <= f64::from(i32::MAX)).then_some(y as i32)
}

fn names_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().flat_map(names_of).collect(),
        Value::Object(o) => o.get("name").and_then(text_of).into_iter().collect(),
        Value::String(s) => vec![clean_text(s)],
        _ => Vec::new(),
    }
}

fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(text_of).collect(),
        other => text_of(other).into_iter().collect(),
    }
}

fn year_of(date: &str) -> Option<i32> {
    date.get(0..4)?
        .parse()
        .ok()
        .filter(|y| (1870..=2100).contains(y))
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    let v: Vec<String> = v.into_iter().filter(|s| !s.is_empty()).collect();
    (!v.is_empty()).then_some(v)
}

/// Fills the empty fields of `into` from `from`.
fn fill(into: &mut ParsedTitle, from: ParsedTitle) {
    let (a, b) = (&mut into.movie, from.movie);
    macro_rules! take {
        ($($f:ident),*) => { $( if a.$f.is_none() { a.$f = b.$f; } )* };
    }
    take!(
        title,
        year,
        runtime_min,
        genres,
        rating,
        votes,
        certificate,
        languages,
        countries,
        directors,
        cast,
        plot,
        budget,
        gross
    );
    if into.poster_url.is_none() {
        into.poster_url = from.poster_url;
    }
    into.sources.extend(from.sources);
}

fn is_movie_type(v: &Value) -> bool {
    let t = |s: &str| {
        let s = s.rsplit('/').next().unwrap_or(s);
        matches!(
            s,
            "Movie" | "TVSeries" | "TVMovie" | "CreativeWork" | "TVEpisode"
        )
    };
    match v.get("@type") {
        Some(Value::String(s)) => t(s),
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str().is_some_and(t)),
        _ => false,
    }
}

pub fn from_json_ld(doc: &Html, id: &str) -> Option<ParsedTitle> {
    for script in doc.select(&sel(r#"script[type="application/ld+json"]"#)) {
        // `text()`, not `inner_html()`: the latter re-escapes `&` and would hide entities.
        let Ok(v) = serde_json::from_str::<Value>(&script.text().collect::<String>()) else {
            continue;
        };
        let candidates: Vec<&Value> = match &v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let Some(m) = candidates.into_iter().find(|c| is_movie_type(c)) else {
            continue;
        };
        let rating = m.get("aggregateRating");
        let movie = Movie {
            title: m.get("name").and_then(text_of),
            year: m
                .get("datePublished")
                .and_then(text_of)
                .as_deref()
                .and_then(year_of),
            runtime_min: m
                .get("duration")
                .and_then(text_of)
                .as_deref()
                .and_then(runtime_minutes),
            genres: m.get("genre").map(strings_of).and_then(non_empty),
            rating: rating
                .and_then(|r| r.get("ratingValue"))
                .and_then(num_of)
                .map(|x| x as f32),
            votes: rating
                .and_then(|r| r.get("ratingCount"))
                .and_then(text_of)
                .as_deref()
                .and_then(vote_count),
            certificate: m.get("contentRating").and_then(text_of),
            plot: m.get("description").and_then(text_of),
            directors: m.get("director").map(names_of).and_then(non_empty),
            cast: m
                .get("actor")
                .or_else(|| m.get("actors"))
                .map(names_of)
                .and_then(non_empty),
            countries: m.get("countryOfOrigin").map(names_of).and_then(non_empty),
            languages: m.get("inLanguage").map(strings_of).and_then(non_empty),
            ..Movie::new(id)
        };
        return Some(ParsedTitle {
            movie,
            poster_url: m.get("image").and_then(|i| match i {
                Value::Object(o) => o.get("url").and_then(text_of),
                other => text_of(other),
            }),
            sources: vec!["json-ld"],
        });
    }
    None
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .try_fold(v, |cur, k| cur.get(*k))
        .filter(|v| !v.is_null())
}

fn texts_at(list: Option<&Value>, keys: &[&str]) -> Option<Vec<String>> {
    let items = list?.as_array()?;
    non_empty(
        items
            .iter()
            .filter_map(|it| path(it, keys).and_then(text_of))
            .collect(),
    )
}

pub fn from_next_data(doc: &Html, id: &str) -> Option<ParsedTitle> {
    let script = doc.select(&sel("script#__NEXT_DATA__")).next()?;
    let v: Value = serde_json::from_str(&script.text().collect::<String>()).ok()?;
    let props = path(&v, &["props", "pageProps"])?;
    let atf = props.get("aboveTheFoldData")?;
    let main = props.get("mainColumnData").unwrap_or(&Value::Null);
    let credits = |category: &str| -> Option<Vec<String>> {
        let groups = atf.get("principalCredits")?.as_array()?;
        let group = groups.iter().find(|g| {
            path(g, &["category", "id"])
                .and_then(Value::as_str)
                .is_some_and(|c| c.eq_ignore_ascii_case(category))
        })?;
        texts_at(group.get("credits"), &["name", "nameText", "text"])
    };
    let movie = Movie {
        title: path(atf, &["titleText", "text"]).and_then(text_of),
        year: path(atf, &["releaseYear", "year"])
            .and_then(num_of)
            .and_then(whole_year),
        runtime_min: path(atf, &["runtime", "seconds"])
            .and_then(num_of)
            .map(|s| (s / 60.0).round() as f32),
        genres: texts_at(path(atf, &["genres", "genres"]), &["text"]),
        rating: path(atf, &["ratingsSummary", "aggregateRating"])
            .and_then(num_of)
            .map(|x| x as f32),
        votes: path(atf, &["ratingsSummary", "voteCount"])
            .and_then(num_of)
            .and_then(count_of),
        certificate: path(atf, &["certificate", "rating"]).and_then(text_of),
        plot: path(atf, &["plot", "plotText", "plainText"]).and_then(text_of),
        directors: credits("director"),
        cast: credits("cast").or_else(|| credits("star")),
        countries: texts_at(path(main, &["countriesOfOrigin", "countries"]), &["text"]),
        languages: texts_at(
            path(main, &["spokenLanguages", "spokenLanguages"]),
            &["text"],
        ),
        budget: path(main, &["productionBudget", "budget", "amount"]).and_then(num_of),
        gross: path(main, &["worldwideGross", "total", "amount"]).and_then(num_of),
        ..Movie::new(id)
    };
    Some(ParsedTitle {
        movie,
        poster_url: path(atf, &["primaryImage", "url"]).and_then(text_of),
        sources: vec!["next-data"],
    })
}

fn first_text(scope: &ElementRef, selector: &str) -> Option<String> {
    scope
        .select(&sel(selector))
        .next()
        .map(|e| clean_text(&e.text().collect::<String>()))
        .filter(|s| !s.is_empty())
}

fn all_texts(scope: &ElementRef, selector: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for e in scope.select(&sel(selector)) {
        let t = clean_text(&e.text().collect::<String>());
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    non_empty(out)
}

/// Legacy genre texts, some wrapped as "Genres: Crime | Drama": split and de-duplicated.
fn legacy_genres(found: Vec<String>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in found {
        let t = t.rsplit(':').next().unwrap_or(&t).to_string();
        for g in t.split(['|', ',']).map(str::trim).filter(|g| !g.is_empty()) {
            if !out.iter().any(|o| o == g) {
                out.push(g.to_string());
            }
        }
    }
    non_empty(out)
}

/// The pre-2020 layout with schema.org microdata, plus older `title_wrapper` markup.
pub fn from_legacy(doc: &Html, id: &str) -> Option<ParsedTitle> {
    let root = doc.root_element();
    let scope = doc
        .select(&sel(
            r#"[itemtype$="schema.org/Movie"], [itemtype$="schema.org/TVSeries"]"#,
        ))
        .next()
        .unwrap_or(root);
    let title = legacy_title(&scope)?;
    let year = first_text(&scope, "#titleYear a, #titleYear").and_then(|t| {
        t.trim_matches(|c: char| !c.is_ascii_digit())
            .get(0..4)
            .and_then(|y| y.parse().ok())
    });
    let attr = |selector: &str, name: &str| {
        scope
            .select(&sel(selector))
            .next()
            .and_then(|e| e.value().attr(name))
            .map(clean_text)
    };
    let movie = Movie {
        title: Some(title),
        year,
        runtime_min: legacy_runtime(&scope),
        genres: all_texts(&scope, r#"[itemprop="genre"]"#).and_then(legacy_genres),
        rating: first_text(&scope, r#"[itemprop="ratingValue"]"#)
            .and_then(|t| t.replace(',', ".").parse().ok()),
        votes: first_text(&scope, r#"[itemprop="ratingCount"]"#)
            .as_deref()
            .and_then(vote_count),
        certificate: attr(r#"meta[itemprop="contentRating"]"#, "content")
            .or_else(|| first_text(&scope, r#"[itemprop="contentRating"]"#)),
        plot: first_text(&scope, r#".summary_text, [itemprop="description"]"#),
        directors: all_texts(&scope, r#"[itemprop="director"] [itemprop="name"]"#),
        cast: all_texts(
            &scope,
            r#"[itemprop="actors"] [itemprop="name"], [itemprop="actor"] [itemprop="name"]"#,
        ),
        budget: legacy_budget(doc),
        ..Movie::new(id)
    };
    Some(ParsedTitle {
        movie,
        poster_url: attr(r#".poster img, img[itemprop="image"]"#, "src"),
        sources: vec!["legacy"],
    })
}

/// The legacy page's title: the heading's own text, without the nested "(1994)" year span
/// (or its whole text when it has none of its own).
fn legacy_title(scope: &ElementRef) -> Option<String> {
    let h1 = scope
        .select(&sel(r#"h1[itemprop="name"], .title_wrapper h1, h1"#))
        .next()?;
    let own: String = h1
        .children()
        .filter_map(|c| c.value().as_text().map(|t| t.to_string()))
        .collect();
    Some(clean_text(&own))
        .filter(|s| !s.is_empty())
        .or_else(|| Some(clean_text(&h1.text().collect::<String>())))
}

/// Minutes from the duration element's ISO 8601 `datetime`, or else from its text.
fn legacy_runtime(scope: &ElementRef) -> Option<f32> {
    let duration = sel(r#"time[itemprop="duration"]"#);
    scope
        .select(&duration)
        .next()
        .and_then(|e| e.value().attr("datetime"))
        .map(clean_text)
        .as_deref()
        .and_then(runtime_minutes)
        .or_else(|| {
            first_text(scope, r#"time[itemprop="duration"]"#)
                .as_deref()
                .and_then(runtime_minutes)
        })
}

/// The "Budget: $…" line of the details block.
fn legacy_budget(doc: &Html) -> Option<f64> {
    doc.select(&sel("#titleDetails .txt-block"))
        .map(|e| e.text().collect::<String>())
        .find(|t| t.contains("Budget"))
        .and_then(|t| money(t.split(':').nth(1).unwrap_or(&t)))
}

/// Parses a title page. Errors when no source yields at least a title.
pub fn parse_title_page(html: &str, id: &str) -> Result<ParsedTitle, String> {
    let doc = Html::parse_document(html);
    let mut result: Option<ParsedTitle> = None;
    for found in [
        from_json_ld(&doc, id),
        from_next_data(&doc, id),
        from_legacy(&doc, id),
    ]
    .into_iter()
    .flatten()
    {
        match &mut result {
            None => result = Some(found),
            Some(r) => fill(r, found),
        }
    }
    result.filter(|r| r.movie.title.is_some()).ok_or_else(|| {
        "no title data found (no JSON-LD, __NEXT_DATA__ or legacy markup)".to_string()
    })
}

/// Title ids linked from a list, chart or search page, in page order, without repeats.
pub fn title_ids(html: &str) -> Vec<String> {
    let doc = Html::parse_document(html);
    let mut out: Vec<String> = Vec::new();
    for a in doc.select(&sel("a[href]")) {
        let href = a.value().attr("href").unwrap_or_default();
        if let Some(i) = href.find("/title/tt") {
            let digits: String = href[i + 9..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.len() >= 5 {
                let id = format!("tt{digits}");
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}

/// The "next page" link of a list page, if any.
pub fn next_page(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let by_rel = doc
        .select(&sel(
            r#"a[rel="next"], link[rel="next"], a.lister-page-next, a.next-page"#,
        ))
        .next();
    let found = by_rel.or_else(|| {
        doc.select(&sel("a[href]")).find(|a| {
            clean_text(&a.text().collect::<String>())
                .trim_end_matches(['»', '›', ' '])
                .eq_ignore_ascii_case("next")
        })
    })?;
    found.value().attr("href").map(String::from)
}
