//! Scraper tests against a local HTTP server on 127.0.0.1 serving fixture pages written for
//! these tests: JSON-LD, Next.js and legacy layouts, broken pages, 404, 429 with Retry-After,
//! 500, slow and oversized responses, and robots.txt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cinefuse_scrape::parse::{next_page, parse_title_page, title_ids};
use cinefuse_scrape::{ScrapeConfig, harvest_list, scrape};

/// This package's folder: Cargo's value when it runs the test (right even when the binary was
/// built from another checkout sharing the target folder), else the one compiled in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::manifest_dir().join("tests/fixtures").join(name)).unwrap()
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(30, 45, image::Rgb(rgb))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[derive(Default)]
struct Log {
    counts: HashMap<String, usize>,
    times: Vec<Instant>,
}

struct Server {
    base: String,
    log: Arc<Mutex<Log>>,
}

impl Server {
    fn count(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .counts
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// A fixture site. Stops when the test process ends.
fn serve() -> Server {
    serve_with_robots("User-agent: *\nDisallow: /title/tt0000066/\n")
}

fn serve_with_robots(robots: &'static str) -> Server {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let log = Arc::new(Mutex::new(Log::default()));
    let (srv, lg) = (server.clone(), log.clone());
    std::thread::spawn(move || {
        for req in srv.incoming_requests() {
            let lg = lg.clone();
            std::thread::spawn(move || {
                let path = req.url().to_string();
                let n = {
                    let mut l = lg.lock().unwrap();
                    l.times.push(Instant::now());
                    let c = l.counts.entry(path.clone()).or_default();
                    *c += 1;
                    *c
                };
                let html = |s: String| {
                    tiny_http::Response::from_data(s.into_bytes()).with_header(
                        "Content-Type: text/html; charset=utf-8"
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    )
                };
                let status =
                    |code: u16| tiny_http::Response::from_data(Vec::new()).with_status_code(code);
                let redirect = |to: &str| {
                    status(302).with_header(
                        format!("Location: {to}")
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    )
                };
                let resp = match path.as_str() {
                    "/robots.txt" => html(robots.into()),
                    "/title/tt0000001/" => html(fixture("jsonld.html")),
                    "/title/tt0000002/" => html(fixture("nextdata.html")),
                    "/title/tt0000003/" => html(fixture("legacy.html")),
                    "/title/tt0000004/" => html(fixture("broken.html")),
                    "/title/tt0000006/" if n == 1 => status(429)
                        .with_header("Retry-After: 1".parse::<tiny_http::Header>().unwrap()),
                    "/title/tt0000006/" => {
                        html(fixture("jsonld.html").replace("tt0000001", "tt0000006"))
                    }
                    "/title/tt0000020/" => redirect("/title/tt0000066/"),
                    "/title/tt0000021/" => redirect("/hop/2"),
                    "/hop/2" => redirect("/hop/1"),
                    "/hop/1" => redirect("/title/tt0000001/"),
                    // The same server under another name is another site.
                    "/title/tt0000022/" => {
                        redirect(&format!("http://localhost:{port}/title/tt0000001/"))
                    }
                    "/busy" if n == 1 => status(429)
                        .with_header("Retry-After: 1".parse::<tiny_http::Header>().unwrap()),
                    "/dated" if n == 1 => {
                        let at = std::time::SystemTime::now() + Duration::from_secs(3);
                        let header = format!("Retry-After: {}", httpdate::fmt_http_date(at));
                        status(503).with_header(header.parse::<tiny_http::Header>().unwrap())
                    }
                    "/busy" | "/other" | "/dated" => html("ok".into()),
                    "/title/tt0000007/" if n <= 2 => status(500),
                    "/title/tt0000007/" => html(fixture("nextdata.html")),
                    "/title/tt0000008/" => {
                        std::thread::sleep(Duration::from_millis(1500));
                        html(fixture("jsonld.html"))
                    }
                    "/title/tt0000009/" => html("x".repeat(3 * 1024 * 1024)),
                    "/title/tt0000010/" => html(
                        fixture("jsonld.html")
                            .replace("tt0000001", "tt0000010")
                            .replace("\"ratingValue\":7.4", "\"ratingValue\":85"),
                    ),
                    "/posters/tt0000001.png" | "/posters/tt0000006.png" => {
                        tiny_http::Response::from_data(png([200, 30, 30]))
                    }
                    "/posters/tt0000002.png" => tiny_http::Response::from_data(png([30, 30, 200])),
                    "/posters/bad.png" => {
                        tiny_http::Response::from_data(b"not an image at all".to_vec())
                    }
                    "/list" => html(fixture("list1.html")),
                    "/list?page=2" => html(fixture("list2.html")),
                    _ => status(404),
                };
                let _ = req.respond(resp);
            });
        }
    });
    Server {
        base: format!("http://127.0.0.1:{port}"),
        log,
    }
}

fn config(base: &str) -> ScrapeConfig {
    ScrapeConfig {
        base_url: base.into(),
        concurrency: 3,
        rate: 50.0,
        timeout: Duration::from_millis(500),
        max_page_bytes: 1024 * 1024,
        retries: 2,
        backoff_base: Duration::from_millis(50),
        show_progress: false,
        ..ScrapeConfig::default()
    }
}

#[test]
fn json_ld_page_is_parsed_exactly_and_completed_from_next_data() {
    let p = parse_title_page(&fixture("jsonld.html"), "tt0000001").unwrap();
    let m = p.movie;
    assert_eq!(m.title.as_deref(), Some("The Lighthouse Keeper's Daughter"));
    assert_eq!(m.year, Some(2011));
    assert_eq!(m.runtime_min, Some(122.0));
    assert_eq!(m.genres, Some(vec!["Drama".into(), "Mystery".into()]));
    assert_eq!(m.rating, Some(7.4));
    assert_eq!(m.votes, Some(123_456));
    assert_eq!(m.certificate.as_deref(), Some("PG-13"));
    assert_eq!(
        m.plot.as_deref(),
        Some("A keeper & his daughter guard a light that ships no longer need.")
    );
    assert_eq!(m.directors, Some(vec!["Ada Berg".into()]));
    assert_eq!(
        m.cast,
        Some(vec!["Mira Okafor".into(), "Jonas Duval".into()])
    );
    assert_eq!(m.countries, Some(vec!["Norway".into(), "Denmark".into()]));
    assert_eq!(m.languages, Some(vec!["Norwegian".into()]));
    assert_eq!(m.budget, Some(4_500_000.0));
    assert_eq!(m.gross, Some(12_750_000.0));
    assert_eq!(p.poster_url.as_deref(), Some("/posters/tt0000001.png"));
    assert_eq!(p.sources[..2], ["json-ld", "next-data"]);
}

#[test]
fn next_data_page_is_parsed_exactly() {
    let p = parse_title_page(&fixture("nextdata.html"), "tt0000002").unwrap();
    let m = p.movie;
    assert_eq!(m.title.as_deref(), Some("Signal Lost"));
    assert_eq!(m.year, Some(2019));
    assert_eq!(m.runtime_min, Some(94.0));
    assert_eq!(m.certificate.as_deref(), Some("R"));
    assert_eq!(m.rating, Some(6.1));
    assert_eq!(m.votes, Some(2_934_112));
    assert_eq!(m.genres, Some(vec!["Sci-Fi".into(), "Thriller".into()]));
    assert_eq!(
        m.plot.as_deref(),
        Some("An astronaut hears a voice on a dead frequency.")
    );
    assert_eq!(m.directors, Some(vec!["Hiro Sato".into()]));
    assert_eq!(m.cast, Some(vec!["Luca Novak".into(), "Tara Quist".into()]));
    assert_eq!(m.countries, Some(vec!["Japan".into()]));
    assert_eq!(m.languages, Some(vec!["Japanese".into(), "English".into()]));
    assert_eq!(p.poster_url.as_deref(), Some("/posters/tt0000002.png"));
    assert_eq!(p.sources[0], "next-data");
}

/// A negative vote count is unknown, not 0 (the cast saturated it to 0 before).
#[test]
fn a_negative_vote_count_is_unknown() {
    let page = fixture("nextdata.html").replace("\"voteCount\":2934112", "\"voteCount\":-5");
    let p = parse_title_page(&page, "tt0000002").unwrap();
    assert_eq!(p.movie.votes, None);
    assert_eq!(
        p.movie.rating,
        Some(6.1),
        "the rest of the page still parses"
    );
}

/// A fractional year or one past i32 is unknown, not truncated or saturated; a whole year is
/// kept as written, however odd, for the range check to report.
#[test]
fn an_odd_release_year_is_unknown_or_kept_as_written() {
    let page = fixture("nextdata.html");
    let year = |y: &str| {
        let edited = page.replace("\"year\":2019", &format!("\"year\":{y}"));
        assert_ne!(edited, page, "the fixture's year");
        parse_title_page(&edited, "tt0000002").unwrap().movie.year
    };
    assert_eq!(year("2019.5"), None);
    assert_eq!(year("1e12"), None);
    assert_eq!(year("20000"), Some(20000));
}

#[test]
fn legacy_page_is_parsed_exactly() {
    let p = parse_title_page(&fixture("legacy.html"), "tt0000003").unwrap();
    let m = p.movie;
    assert_eq!(m.title.as_deref(), Some("Winter Harbor"));
    assert_eq!(m.year, Some(1987));
    assert_eq!(
        m.runtime_min,
        Some(108.0),
        "the title's duration, not the trailer's"
    );
    assert_eq!(m.genres, Some(vec!["Drama".into(), "Romance".into()]));
    assert_eq!(m.rating, Some(8.1));
    assert_eq!(m.votes, Some(45_210));
    assert_eq!(m.certificate.as_deref(), Some("PG"));
    assert_eq!(
        m.plot.as_deref(),
        Some("Two strangers wait out a storm in a fishing town & change each other's lives.")
    );
    assert_eq!(m.directors, Some(vec!["Greta Moreau".into()]));
    assert_eq!(
        m.cast,
        Some(vec!["Sven Larsen".into(), "Rosa Petrov".into()])
    );
    assert_eq!(m.budget, Some(2_500_000.0));
    assert_eq!(p.poster_url.as_deref(), Some("/posters/bad.png"));
    assert_eq!(p.sources, vec!["legacy"]);
}

#[test]
fn broken_page_is_an_error() {
    let e = parse_title_page(&fixture("broken.html"), "tt0000004").unwrap_err();
    assert!(e.contains("no title data"), "{e}");
}

#[test]
fn list_pages_yield_ids_in_order_and_a_next_link() {
    assert_eq!(
        title_ids(&fixture("list1.html")),
        vec!["tt0000001", "tt0000002", "tt0000003"]
    );
    assert_eq!(
        next_page(&fixture("list1.html")).as_deref(),
        Some("/list?page=2")
    );
    assert_eq!(next_page(&fixture("list2.html")), None);
}

#[test]
fn scraping_handles_every_failure_mode_and_resumes_without_refetching() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let ids: Vec<String> = (1..=10)
        .map(|i| format!("tt{i:07}"))
        .chain(["tt0000066".to_string()])
        .collect();
    let report = scrape(&ids, &out, &config(&server.base)).unwrap();

    let mut failed: Vec<(String, String)> = report
        .failed
        .iter()
        .map(|f| (f.id.clone(), f.reason.clone()))
        .collect();
    failed.sort();
    let reason = |id: &str| {
        failed
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(
        reason("tt0000003").contains("poster") && reason("tt0000003").contains("not an image"),
        "{failed:?}"
    );
    assert!(reason("tt0000004").contains("no title data"), "{failed:?}");
    assert!(reason("tt0000005").contains("404"), "{failed:?}");
    assert!(
        reason("tt0000008").contains("request failed")
            && reason("tt0000008").contains("3 attempts"),
        "{failed:?}"
    );
    assert!(reason("tt0000009").contains("limit"), "{failed:?}");
    assert!(reason("tt0000066").contains("robots"), "{failed:?}");
    assert!(
        reason("tt0000010").contains("field `rating`: must be within 0–10, got 85"),
        "{failed:?}"
    );
    assert_eq!(
        report.done, 5,
        "1, 2, 3 (without poster), 6 after a 429, 7 after two 500s"
    );
    assert_eq!(
        report.posters, 4,
        "1, 2, 6 and 7 (3's poster is not an image)"
    );
    assert_eq!(
        server.count("/title/tt0000006/"),
        2,
        "retried after Retry-After"
    );
    assert_eq!(
        server.count("/title/tt0000007/"),
        3,
        "two 500s then success"
    );
    assert_eq!(
        server.count("/title/tt0000066/"),
        0,
        "robots.txt is respected"
    );
    assert_eq!(server.count("/title/tt0000005/"), 1, "404 is not retried");

    let movies = cinefuse_data::movie::read_movies(&out).unwrap();
    let got: Vec<&str> = movies.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        got,
        vec![
            "tt0000001",
            "tt0000002",
            "tt0000003",
            "tt0000006",
            "tt0000007"
        ]
    );
    let first = &movies[0];
    let poster = out.join(first.poster.as_ref().unwrap());
    assert!(image::open(&poster).is_ok(), "poster saved and decodable");
    assert!(movies[2].poster.is_none());
    let failures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("scrape_failures.json")).unwrap()).unwrap();
    assert_eq!(failures.as_array().unwrap().len(), report.failed.len());

    // Second run: finished titles are neither fetched nor parsed again; the records stay unique.
    let before: Vec<usize> = [
        "/title/tt0000001/",
        "/title/tt0000002/",
        "/posters/tt0000001.png",
    ]
    .iter()
    .map(|p| server.count(p))
    .collect();
    let again = scrape(&ids, &out, &config(&server.base)).unwrap();
    let after: Vec<usize> = [
        "/title/tt0000001/",
        "/title/tt0000002/",
        "/posters/tt0000001.png",
    ]
    .iter()
    .map(|p| server.count(p))
    .collect();
    assert_eq!(before, after);
    assert_eq!(again.already_done, 5);
    assert_eq!(cinefuse_data::movie::read_movies(&out).unwrap().len(), 5);

    // Parser changes re-use the HTML cache: drop the records, keep the pages.
    std::fs::remove_dir_all(out.join(".scrape/records")).unwrap();
    let reparsed = scrape(&ids[..3], &out, &config(&server.base)).unwrap();
    assert_eq!(reparsed.from_cache, 3);
    assert_eq!(reparsed.fetched, 0);
    assert_eq!(server.count("/title/tt0000001/"), 1);
    assert_eq!(
        cinefuse_data::movie::read_movies(&out).unwrap().len(),
        5,
        "movies without a record are kept, never dropped"
    );
    // A FIFO in place of a cached page fails that title, by name; it does not block the scrape.
    #[cfg(unix)]
    {
        std::fs::remove_dir_all(out.join(".scrape/records")).unwrap();
        let page = out.join(".scrape/html/tt0000001.html");
        std::fs::remove_file(&page).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&page).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let r = scrape(&ids[..1], &out, &config(&server.base)).unwrap();
        let reasons: Vec<&str> = r.failed.iter().map(|f| f.reason.as_str()).collect();
        assert!(
            reasons.len() == 1 && reasons[0].contains("not a regular file"),
            "{reasons:?}"
        );
        std::fs::remove_file(&page).unwrap();
    }

    // A line the scrape cannot read is refused before anything is rewritten.
    let movies_file = out.join("movies.jsonl");
    let mut text = std::fs::read_to_string(&movies_file).unwrap();
    text.push_str("{broken\n");
    std::fs::write(&movies_file, &text).unwrap();
    let e = scrape(&ids[..1], &out, &config(&server.base))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("movies.jsonl:6") && e.contains("new folder"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&movies_file).unwrap(), text);

    // Neither is a dataset the scrape did not write.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("movies.jsonl"), "{\"id\":\"x\"}\n").unwrap();
    let e = scrape(&ids[..1], &other, &config(&server.base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an earlier scrape"), "{e}");
    assert_eq!(
        std::fs::read_to_string(other.join("movies.jsonl")).unwrap(),
        "{\"id\":\"x\"}\n"
    );
}

/// robots.txt's `Crawl-delay` spaces requests further than `--rate` would.
#[test]
fn the_crawl_delay_of_robots_txt_is_honoured() {
    let server = serve_with_robots("User-agent: *\nCrawl-delay: 0.3\n");
    let dir = tempfile::tempdir().unwrap();
    let cfg = ScrapeConfig {
        rate: 50.0,
        concurrency: 3,
        download_posters: false,
        ..config(&server.base)
    };
    let ids: Vec<String> = ["tt0000001", "tt0000002", "tt0000003", "tt0000010"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    scrape(&ids, &dir.path().join("ds"), &cfg).unwrap();
    let mut times = server.log.lock().unwrap().times.clone();
    times.sort();
    assert_eq!(times.len(), 5, "robots.txt + 4 pages");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(280),
            "requests {gap:?} apart with Crawl-delay 0.3"
        );
    }
}

#[test]
fn the_rate_limit_is_honoured() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ScrapeConfig {
        rate: 5.0,
        concurrency: 4,
        download_posters: false,
        ..config(&server.base)
    };
    let ids: Vec<String> = [
        "tt0000001",
        "tt0000002",
        "tt0000003",
        "tt0000005",
        "tt0000010",
        "tt0000011",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    scrape(&ids, &dir.path().join("ds"), &cfg).unwrap();
    let mut times = server.log.lock().unwrap().times.clone();
    times.sort();
    assert!(times.len() >= 7, "robots.txt + 6 pages");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(180),
            "requests {gap:?} apart at 5 req/s"
        );
    }
}

#[test]
fn list_harvesting_follows_pagination() {
    let server = serve();
    let ids = harvest_list("/list", &config(&server.base), 10).unwrap();
    assert_eq!(
        ids,
        vec!["tt0000001", "tt0000002", "tt0000003", "tt0000010"]
    );
}

/// Optional: the real legacy IMDb page in ../shared/data (skips when absent).
#[test]
fn real_legacy_page_field_coverage() {
    let dir = crate::manifest_dir().join("../../../shared/data/imdb-html");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        announce_skip(&format!("{} is absent", dir.display()));
        return;
    };
    let pages: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    // A folder without the page must not pass as if it had been checked.
    assert!(!pages.is_empty(), "{} holds no .html page", dir.display());
    for p in pages {
        let html = std::fs::read_to_string(&p).unwrap();
        let parsed = parse_title_page(&html, "tt0111161").unwrap();
        let m = &parsed.movie;
        let fields = cinefuse_data::movie::FIELDS;
        let present: Vec<&str> = fields.iter().copied().filter(|f| m.has(f)).collect();
        eprintln!(
            "{}: {}/{} fields: {present:?}",
            p.display(),
            present.len(),
            fields.len()
        );
        assert_eq!(m.title.as_deref(), Some("Sueños de libertad"));
        assert_eq!(m.year, Some(1994));
        assert_eq!(m.rating, Some(9.3));
        assert_eq!(m.votes, Some(1_936_575));
        assert_eq!(m.runtime_min, Some(142.0));
        assert_eq!(m.genres, Some(vec!["Crime".into(), "Drama".into()]));
        assert_eq!(m.directors, Some(vec!["Frank Darabont".into()]));
        assert!(
            m.cast
                .as_ref()
                .is_some_and(|c| c.starts_with(&["Tim Robbins".into(), "Morgan Freeman".into()]))
        );
        assert!(parsed.poster_url.is_some());
    }
}

/// Says why a test was skipped where `cargo test` shows it even for a passing test (libtest
/// captures the print macros, not direct writes to stderr).
fn announce_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// A server that answers at once with headers promising 100 bytes, then sends one byte
/// every 100 ms.
fn dripping_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.write_all(b"x").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn the_timeout_covers_a_body_that_drips() {
    let port = dripping_server();
    let fetcher = cinefuse_scrape::fetch::Fetcher::new(cinefuse_scrape::fetch::FetchPolicy {
        user_agent: "test".into(),
        rate: 0.0,
        timeout: Duration::from_millis(500),
        max_bytes: 1 << 20,
        retries: 0,
        backoff_base: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    })
    .unwrap();
    let started = Instant::now();
    let e = fetcher
        .get(&format!("http://127.0.0.1:{port}/slow"))
        .unwrap_err();
    // The whole body would take 10 s; the timeout is 0.5 s (plus at most one read).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(e.reason.contains("reading the body failed"), "{e}");
}

#[test]
fn redirects_are_rate_limited_checked_against_robots_txt_and_stay_on_the_site() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ScrapeConfig {
        rate: 5.0,
        concurrency: 2,
        download_posters: false,
        ..config(&server.base)
    };
    let ids: Vec<String> = vec!["tt0000020".into(), "tt0000021".into(), "tt0000022".into()];
    let report = scrape(&ids, &dir.path().join("ds"), &cfg).unwrap();
    assert_eq!(
        server.count("/title/tt0000066/"),
        0,
        "a redirect into a disallowed path"
    );
    assert_eq!(
        server.count("/title/tt0000001/"),
        1,
        "only the chain on the site reached the page; the hop to localhost was not taken"
    );
    let mut failed = report.failed.clone();
    failed.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(
        failed.len() == 2
            && failed[0].reason.contains("robots.txt")
            && failed[1].id == "tt0000022"
            && failed[1]
                .reason
                .contains("redirected off the site, to http://localhost:"),
        "{failed:?}"
    );
    assert_eq!(
        report.done, 1,
        "the chain of three redirects ends at a page"
    );
    let mut times = server.log.lock().unwrap().times.clone();
    times.sort();
    assert_eq!(
        times.len(),
        1 + 3 + 3,
        "robots.txt, 3 requests, 3 redirect hops"
    );
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(180),
            "requests {gap:?} apart at 5 req/s"
        );
    }
}

fn fetcher(retries: u32) -> cinefuse_scrape::fetch::Fetcher {
    cinefuse_scrape::fetch::Fetcher::new(cinefuse_scrape::fetch::FetchPolicy {
        user_agent: "test".into(),
        rate: 0.0,
        timeout: Duration::from_secs(5),
        max_bytes: 1 << 20,
        retries,
        backoff_base: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(10),
    })
    .unwrap()
}

#[test]
fn retry_after_pauses_every_worker_and_reads_http_dates() {
    let server = serve();
    let f = fetcher(1);
    let started = Instant::now();
    assert_eq!(f.get(&format!("{}/dated", server.base)).unwrap(), b"ok");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "an HTTP-date Retry-After: {waited:?}"
    );

    // A 429 told to one worker holds the other back too.
    let f = fetcher(1);
    let other_at = std::thread::scope(|s| {
        let busy = s.spawn(|| f.get(&format!("{}/busy", server.base)).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        f.get(&format!("{}/other", server.base)).unwrap();
        busy.join().unwrap();
        started.elapsed()
    });
    assert!(
        other_at >= Duration::from_millis(500),
        "the other worker waited only {other_at:?}"
    );
}
