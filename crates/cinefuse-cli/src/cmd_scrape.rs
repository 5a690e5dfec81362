//! `scrape`: IMDb title pages → a cinefuse dataset.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use cinefuse_scrape::{ScrapeConfig, harvest_list, scrape};
use clap::Args;

#[derive(Args)]
pub struct ScrapeArgs {
    /// A file with one title id per line (blank lines and # comments ignored).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// One title id (repeatable).
    #[arg(long = "id")]
    id: Vec<String>,
    /// A list, chart or search page to harvest title ids from (follows "next" links).
    #[arg(long)]
    list: Option<String>,
    /// List pages to follow at most (1 to 10000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    max_pages: u16,
    /// Dataset directory to write (resumable: run the same command again to continue).
    #[arg(long)]
    out: PathBuf,
    /// The site to scrape (a local mirror for tests); its robots.txt is obeyed.
    #[arg(long, default_value = "https://www.imdb.com")]
    base_url: String,
    /// Parallel requests in flight (1 to 16).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    concurrency: u16,
    /// Requests per second, over all workers (0.001 to 50).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0, value_parser = rate_per_second)]
    rate: f64,
    /// Per-request timeout in seconds (0.1 to 600).
    #[arg(long, allow_negative_numbers = true, default_value_t = 20.0, value_parser = timeout_seconds)]
    timeout: f64,
    /// Retries per request (0 to 20).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=20))]
    retries: u32,
    /// Skip poster downloads.
    #[arg(long)]
    no_posters: bool,
}

/// A finite number within `[lo, hi]`; NaN and infinities never get through.
fn bounded(raw: &str, lo: f64, hi: f64, unit: &str) -> Result<f64, String> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected {lo} to {hi} {unit}, got {raw}"))
    }
}

fn rate_per_second(raw: &str) -> Result<f64, String> {
    bounded(raw, 0.001, 50.0, "requests per second")
}

fn timeout_seconds(raw: &str) -> Result<f64, String> {
    bounded(raw, 0.1, 600.0, "seconds")
}

pub fn run(a: ScrapeArgs) -> Result<()> {
    let cfg = ScrapeConfig {
        base_url: a.base_url.clone(),
        concurrency: usize::from(a.concurrency),
        rate: a.rate,
        timeout: Duration::from_secs_f64(a.timeout),
        retries: a.retries,
        download_posters: !a.no_posters,
        ..ScrapeConfig::default()
    };
    let mut ids: Vec<String> = a.id.clone();
    if let Some(path) = &a.ids {
        let text = cinefuse_data::user_file::read_text_capped(
            path,
            cinefuse_data::user_file::MAX_MOVIE_JSON_BYTES,
        )?;
        ids.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    if let Some(list) = &a.list {
        let found = harvest_list(list, &cfg, usize::from(a.max_pages))?;
        println!("{list}: {} title ids", found.len());
        ids.extend(found);
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.is_empty() {
        bail!("no title ids: pass --ids FILE, --id tt… or --list URL");
    }
    let r = scrape(&ids, &a.out, &cfg)?;
    println!(
        "{} requested: {} scraped now, {} already done, {} pages from cache, {} fetched, {} posters, {} failures ({} HTTP requests)",
        r.requested,
        r.done,
        r.already_done,
        r.from_cache,
        r.fetched,
        r.posters,
        r.failed.len(),
        r.http_requests
    );
    for f in r.failed.iter().take(10) {
        println!("  failed {} ({}): {}", f.id, f.url, f.reason);
    }
    println!(
        "dataset: {} (failures in scrape_failures.json)",
        a.out.display()
    );
    if r.done + r.already_done == 0 {
        bail!(
            "every one of the {} titles failed; nothing was scraped (see the failures above)",
            r.requested
        );
    }
    Ok(())
}
