//! The IMDb scraper: polite (robots.txt, rate limit, bounded concurrency, backoff), resumable
//! (raw HTML cached on disk, one record file per title) and producing the cinefuse dataset format.

pub mod fetch;
pub mod normalize;
pub mod parse;
pub mod robots;
pub mod scrape;

pub use parse::{ParsedTitle, parse_title_page};
pub use scrape::{ScrapeConfig, ScrapeReport, harvest_list, scrape};
