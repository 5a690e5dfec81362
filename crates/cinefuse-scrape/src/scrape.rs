//! Scraping a list of title ids into a dataset directory, resumably:
//! raw pages are cached under `.scrape/html/`, every finished title is a record file under
//! `.scrape/records/` (written atomically), and `movies.jsonl` is rebuilt from the records.
//! A killed run loses at most the titles in flight; the next run fetches nothing twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cinefuse_data::Movie;
use cinefuse_data::atomic::{read_json, write_atomic, write_json_atomic};
use cinefuse_data::movie::{POSTERS_DIR, write_movies};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::fetch::{FetchPolicy, Fetcher};
use crate::parse::{next_page, parse_title_page, title_ids};
use crate::robots::Robots;

pub const STATE_DIR: &str = ".scrape";
pub const FAILURES_FILE: &str = "scrape_failures.json";

#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    pub base_url: String,
    pub user_agent: String,
    pub concurrency: usize,
    /// Requests per second, over all workers.
    pub rate: f64,
    pub timeout: Duration,
    pub max_page_bytes: u64,
    pub max_poster_bytes: u64,
    pub retries: u32,
    pub backoff_base: Duration,
    pub respect_robots: bool,
    pub download_posters: bool,
    pub show_progress: bool,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            base_url: "https://www.imdb.com".into(),
            user_agent: format!(
                "cinefuse/{} (research dataset builder; polite: robots.txt, 1 req/s)",
                env!("CARGO_PKG_VERSION")
            ),
            concurrency: 2,
            rate: 1.0,
            timeout: Duration::from_secs(20),
            max_page_bytes: 5 * 1024 * 1024,
            max_poster_bytes: 10 * 1024 * 1024,
            retries: 4,
            backoff_base: Duration::from_millis(500),
            respect_robots: true,
            download_posters: true,
            show_progress: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub id: String,
    pub url: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrapeReport {
    pub requested: usize,
    /// Titles already finished by an earlier run.
    pub already_done: usize,
    /// Titles finished in this run.
    pub done: usize,
    /// Pages parsed from the HTML cache instead of fetched.
    pub from_cache: usize,
    pub fetched: usize,
    pub posters: usize,
    pub failed: Vec<Failure>,
    pub http_requests: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    movie: Movie,
    sources: Vec<String>,
}

fn policy(cfg: &ScrapeConfig) -> FetchPolicy {
    FetchPolicy {
        user_agent: cfg.user_agent.clone(),
        rate: cfg.rate,
        timeout: cfg.timeout,
        max_bytes: cfg.max_page_bytes,
        retries: cfg.retries,
        backoff_base: cfg.backoff_base,
        max_retry_after: Duration::from_secs(120),
    }
}

fn base(cfg: &ScrapeConfig) -> &str {
    cfg.base_url.trim_end_matches('/')
}

/// The path of `url` on `site` (a base URL without its trailing slash), or None for a URL of
/// another site. "http://a.org" is not a prefix of "http://a.org.evil.net/" in this sense.
fn site_path<'a>(site: &str, url: &'a str) -> Option<&'a str> {
    let rest = url.strip_prefix(site)?;
    match rest.chars().next() {
        None => Some("/"),
        Some('/') | Some('?') | Some('#') => Some(rest),
        Some(_) => None,
    }
}

/// Whether `robots` (the robots.txt of `site`) lets `url` be fetched: other hosts (poster CDNs)
/// are not covered by it.
fn robots_allow(robots: &Robots, site: &str, url: &str) -> bool {
    site_path(site, url).is_none_or(|path| robots.allowed(path))
}

/// Resolves a possibly relative URL against the base.
fn absolute(cfg: &ScrapeConfig, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else if let Some(rest) = url.strip_prefix("//") {
        format!("https://{rest}")
    } else {
        format!("{}/{}", base(cfg), url.trim_start_matches('/'))
    }
}

fn load_robots(fetcher: &Fetcher, cfg: &ScrapeConfig) -> Result<Robots> {
    if !cfg.respect_robots {
        return Ok(Robots::default());
    }
    match fetcher.get(&format!("{}/robots.txt", base(cfg))) {
        Ok(body) => {
            let robots = Robots::parse(&String::from_utf8_lossy(&body), &cfg.user_agent);
            if let Some(delay) = robots.crawl_delay {
                fetcher.respect_crawl_delay(delay);
            }
            // Every request from now on, redirect hops included, is checked.
            let (gate, site) = (robots.clone(), base(cfg).to_string());
            fetcher.set_gate(Box::new(move |url: &str| robots_allow(&gate, &site, url)));
            Ok(robots)
        }
        // No robots.txt (4xx) means no restrictions; a failing server means we stay away.
        Err(e) if e.status.is_some_and(|s| (400..500).contains(&s)) => Ok(Robots::default()),
        Err(e) => bail!("cannot read robots.txt, not crawling: {e}"),
    }
}

/// Checks that an id looks like a title id or a safe file name.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() < 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Shared<'a> {
    cfg: &'a ScrapeConfig,
    fetcher: &'a Fetcher,
    robots: &'a Robots,
    out: &'a Path,
    report: Mutex<ScrapeReport>,
    pb: ProgressBar,
}

impl Shared<'_> {
    fn record_path(&self, id: &str) -> PathBuf {
        self.out
            .join(STATE_DIR)
            .join("records")
            .join(format!("{id}.json"))
    }

    fn fail(&self, id: &str, url: &str, reason: String) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        r.failed.push(Failure {
            id: id.into(),
            url: url.into(),
            reason,
        });
    }

    fn bump(&self, f: impl FnOnce(&mut ScrapeReport)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn allowed(&self, url: &str) -> bool {
        robots_allow(self.robots, base(self.cfg), url)
    }

    fn one(&self, id: &str) {
        let url = format!("{}/title/{id}/", base(self.cfg));
        if !valid_id(id) {
            return self.fail(id, &url, "not a valid title id".into());
        }
        if self.record_path(id).exists() {
            return self.bump(|r| r.already_done += 1);
        }
        let cache = self
            .out
            .join(STATE_DIR)
            .join("html")
            .join(format!("{id}.html"));
        let html = if cache.exists() {
            self.bump(|r| r.from_cache += 1);
            // The output folder is the user's too: a FIFO or a huge file put in place of a
            // cached page must be refused, not block or fill memory.
            match cinefuse_data::user_file::read_capped(&cache, self.cfg.max_page_bytes) {
                Ok(b) => b,
                Err(e) => return self.fail(id, &url, format!("cannot read cached page: {e}")),
            }
        } else {
            if !self.allowed(&url) {
                return self.fail(id, &url, "disallowed by robots.txt".into());
            }
            // A title page that redirects to another host is not this site's page.
            match self.fetcher.get_on_site(&url) {
                Ok(body) => {
                    if let Err(e) = write_atomic(&cache, &body) {
                        return self.fail(id, &url, e.to_string());
                    }
                    self.bump(|r| r.fetched += 1);
                    body
                }
                Err(e) => return self.fail(id, &url, e.reason),
            }
        };
        let parsed = match parse_title_page(&String::from_utf8_lossy(&html), id) {
            Ok(p) => p,
            Err(reason) => return self.fail(id, &url, reason),
        };
        let mut movie = parsed.movie;
        // A page whose values no movie can have (a rating of 85, a year 20000) is reported
        // here, by its page, rather than by `prepare` later as a line of movies.jsonl.
        if let Err((field, why)) = cinefuse_data::validate::check_movie(&movie) {
            return self.fail(id, &url, format!("field `{field}`: {why}"));
        }
        if let (true, Some(poster_url)) = (self.cfg.download_posters, parsed.poster_url) {
            let poster_url = absolute(self.cfg, &poster_url);
            match self.poster(id, &poster_url) {
                Ok(rel) => {
                    movie.poster = Some(rel);
                    self.bump(|r| r.posters += 1);
                }
                // The record is kept without a poster; the problem is reported.
                Err(reason) => self.fail(id, &poster_url, format!("poster: {reason}")),
            }
        }
        let record = Record {
            movie,
            sources: parsed.sources.iter().map(|s| s.to_string()).collect(),
        };
        match write_json_atomic(&self.record_path(id), &record) {
            Ok(()) => self.bump(|r| r.done += 1),
            Err(e) => self.fail(id, &url, e.to_string()),
        }
    }

    fn poster(&self, id: &str, url: &str) -> Result<String, String> {
        if !self.allowed(url) {
            return Err("disallowed by robots.txt".into());
        }
        let bytes = self
            .fetcher
            .get_limited(url, self.cfg.max_poster_bytes)
            .map_err(|e| e.reason)?;
        let format = image::guess_format(&bytes).map_err(|e| format!("not an image: {e}"))?;
        image::load_from_memory_with_format(&bytes, format)
            .map_err(|e| format!("does not decode: {e}"))?;
        let ext = format.extensions_str().first().copied().unwrap_or("img");
        let rel = format!("{POSTERS_DIR}/{id}.{ext}");
        write_atomic(&self.out.join(&rel), &bytes).map_err(|e| e.to_string())?;
        Ok(rel)
    }
}

/// Every finished record, by id.
fn finished_records(out: &Path) -> Result<BTreeMap<String, Movie>> {
    let dir = out.join(STATE_DIR).join("records");
    let mut records: BTreeMap<String, Movie> = BTreeMap::new();
    if dir.exists() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let r: Record = read_json(&p)?;
                records.insert(r.movie.id.clone(), r.movie);
            }
        }
    }
    Ok(records)
}

/// Rebuilds `movies.jsonl` from every finished record (sorted by id: stable across runs). A
/// movie already in the file without a record (its record was deleted to re-parse it, say)
/// is kept: a scrape extends a dataset, it never drops movies from it.
pub fn rebuild_dataset(out: &Path) -> Result<usize> {
    let mut movies: BTreeMap<String, Movie> = existing_movies(out)?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    movies.extend(finished_records(out)?);
    let movies: Vec<Movie> = movies.into_values().collect();
    write_movies(out, &movies)?;
    Ok(movies.len())
}

/// The movies of `out/movies.jsonl`; every line must be readable, or the rebuild would lose it.
fn existing_movies(out: &Path) -> Result<Vec<Movie>> {
    let path = out.join(cinefuse_data::movie::MOVIES_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let parsed = cinefuse_data::movie::parse_movies_file(&path)?;
    if let Some(bad) = parsed.bad.first() {
        bail!(
            "{}:{}: {} — a scrape rewrites this file and would lose the line; fix it or \
             scrape into a new folder",
            path.display(),
            bad.line,
            bad.reason
        );
    }
    Ok(parsed.movies.into_iter().map(|(_, m)| m).collect())
}

/// A scrape writes into a new or empty folder, or resumes one it wrote itself, whose
/// `movies.jsonl` it can read whole.
fn check_scrape_out(out: &Path) -> Result<()> {
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !out.join(STATE_DIR).is_dir() {
        bail!(
            "{}: exists, is not empty and is not an earlier scrape (no {STATE_DIR}/); scrape into \
             a new folder",
            out.display()
        );
    }
    existing_movies(out).map(|_| ())
}

/// Removes temporary files left by a run that was killed between write and rename.
fn remove_stale_temp_files(out: &Path) {
    for sub in ["records", "html"] {
        let Ok(entries) = std::fs::read_dir(out.join(STATE_DIR).join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Scrapes `ids` into `out`.
pub fn scrape(ids: &[String], out: &Path, cfg: &ScrapeConfig) -> Result<ScrapeReport> {
    check_scrape_out(out)?;
    std::fs::create_dir_all(out.join(STATE_DIR))
        .with_context(|| format!("cannot create {}", out.display()))?;
    remove_stale_temp_files(out);
    let fetcher = Fetcher::new(policy(cfg))?;
    let robots = load_robots(&fetcher, cfg)?;
    let pb = if cfg.show_progress {
        ProgressBar::new(ids.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("scrape [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let shared = Shared {
        cfg,
        fetcher: &fetcher,
        robots: &robots,
        out,
        report: Mutex::new(ScrapeReport {
            requested: ids.len(),
            ..Default::default()
        }),
        pb,
    };
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = ids.get(i) else { break };
                    shared.one(id.trim());
                    let r = shared.report.lock().unwrap_or_else(|e| e.into_inner());
                    shared.pb.set_message(format!(
                        "done {} cached {} failed {}",
                        r.done + r.already_done,
                        r.from_cache,
                        r.failed.len()
                    ));
                    drop(r);
                    shared.pb.inc(1);
                }
            });
        }
    });
    shared.pb.finish_and_clear();
    let mut report = shared
        .report
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    report.http_requests = fetcher.requests.load(Ordering::SeqCst);
    rebuild_dataset(out)?;
    write_json_atomic(&out.join(FAILURES_FILE), &report.failed)?;
    Ok(report)
}

/// Harvests title ids from a list, chart or search page, following "next" links.
pub fn harvest_list(url: &str, cfg: &ScrapeConfig, max_pages: usize) -> Result<Vec<String>> {
    let fetcher = Fetcher::new(policy(cfg))?;
    let robots = load_robots(&fetcher, cfg)?;
    let mut ids: Vec<String> = Vec::new();
    let mut page = Some(absolute(cfg, url));
    let mut seen_pages = Vec::new();
    while let Some(u) = page.take() {
        if seen_pages.contains(&u) || seen_pages.len() >= max_pages.max(1) {
            break;
        }
        if !robots_allow(&robots, base(cfg), &u) {
            bail!("{u}: disallowed by robots.txt");
        }
        let html = String::from_utf8_lossy(&fetcher.get_on_site(&u)?).into_owned();
        for id in title_ids(&html) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        seen_pages.push(u.clone());
        page = next_page(&html).map(|n| {
            if n.starts_with('?') {
                format!("{}{n}", u.split('?').next().unwrap_or(&u))
            } else {
                absolute(cfg, &n)
            }
        });
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::site_path;

    #[test]
    fn a_site_path_needs_the_whole_host() {
        let site = "http://a.org:8080";
        assert_eq!(site_path(site, "http://a.org:8080"), Some("/"));
        assert_eq!(
            site_path(site, "http://a.org:8080/title/x/"),
            Some("/title/x/")
        );
        assert_eq!(site_path(site, "http://a.org:8080?page=2"), Some("?page=2"));
        assert_eq!(site_path(site, "http://a.org:80801/title/"), None);
        assert_eq!(site_path("http://a.org", "http://a.org.evil.net/"), None);
        assert_eq!(site_path(site, "https://cdn.net/p.jpg"), None);
    }
}
