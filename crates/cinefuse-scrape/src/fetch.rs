//! HTTP fetching: one shared client, a global rate limit, timeouts, a response-size cap and
//! retries with exponential backoff and jitter on 429/5xx/timeouts, honouring `Retry-After`.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub user_agent: String,
    /// Requests per second across all workers.
    pub rate: f64,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub retries: u32,
    pub backoff_base: Duration,
    /// Longest `Retry-After` honoured; longer waits fail the request instead.
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct FetchError {
    pub url: String,
    pub reason: String,
    pub status: Option<u16>,
}

pub struct Fetcher {
    client: reqwest::blocking::Client,
    policy: FetchPolicy,
    next_slot: Mutex<Instant>,
    /// Time between two requests: from the rate, or longer if robots.txt asks for it.
    interval: Mutex<Duration>,
    /// No worker sends before this (a 429 or 503 with `Retry-After` pauses them all).
    paused_until: Mutex<Instant>,
    /// Which URLs may be fetched (robots.txt), checked again at every redirect.
    gate: OnceLock<Gate>,
    pub requests: AtomicUsize,
}

/// Decides whether a URL may be fetched.
pub type Gate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Where a request's redirects may lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Any host (poster CDNs move images between hosts).
    Anywhere,
    /// Only the scheme, host and port of the URL asked for: a title page that redirects to
    /// another host is not that site's page, and must not send the scraper there.
    SameOrigin,
}

/// Whether `next` has the scheme, host and port of `first`.
fn same_origin(first: &str, next: &reqwest::Url) -> bool {
    reqwest::Url::parse(first).is_ok_and(|f| f.origin() == next.origin())
}

/// Redirects followed per request, each one a request of its own (rate limit, robots.txt).
const MAX_REDIRECTS: usize = 10;

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Reads at most `max + 1` bytes of `body`, failing once `deadline` has passed: the client's
/// timeout bounds each read, not a body that drips one byte at a time.
fn read_body_by(mut body: impl Read, max: u64, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the response took longer than the timeout",
            ));
        }
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > max {
            return Ok(out);
        }
    }
}

/// A failed attempt: the error, whether to retry, and the server's `Retry-After`.
type Failed = (FetchError, bool, Option<Duration>);

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(policy.user_agent.clone())
            // Redirects are followed by `once`, so that each hop waits its turn and is
            // checked against robots.txt.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .build()
            .map_err(|e| FetchError {
                url: String::new(),
                reason: format!("cannot build HTTP client: {e}"),
                status: None,
            })?;
        let interval = if policy.rate > 0.0 {
            Duration::from_secs_f64(1.0 / policy.rate)
        } else {
            Duration::ZERO
        };
        Ok(Self {
            client,
            policy,
            next_slot: Mutex::new(Instant::now()),
            interval: Mutex::new(interval),
            paused_until: Mutex::new(Instant::now()),
            gate: OnceLock::new(),
            requests: AtomicUsize::new(0),
        })
    }

    /// Spaces requests at least `seconds` apart (robots.txt's `Crawl-delay`): the larger of it
    /// and the configured rate wins. Delays beyond five minutes are capped there.
    pub fn respect_crawl_delay(&self, seconds: f64) {
        if !(seconds.is_finite() && seconds > 0.0) {
            return;
        }
        let delay = Duration::from_secs_f64(seconds.min(300.0));
        let mut interval = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        *interval = (*interval).max(delay);
        // The request that read robots.txt counts too: the next one waits the full delay.
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        *next = (*next).max(Instant::now() + delay);
    }

    /// The current time between two requests.
    pub fn interval(&self) -> Duration {
        *self.interval.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// From now on, only URLs that `gate` allows are fetched, redirects included.
    pub fn set_gate(&self, gate: Gate) {
        let _ = self.gate.set(gate);
    }

    fn allowed(&self, url: &str) -> bool {
        self.gate.get().is_none_or(|g| g(url))
    }

    /// Holds every worker back for `wait` (the server asked for it).
    fn pause_all(&self, wait: Duration) {
        let mut until = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        *until = (*until).max(Instant::now() + wait);
    }

    /// Blocks until this worker may send its next request.
    fn wait_for_slot(&self) {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if paused > now {
            std::thread::sleep(paused - now);
        }
        let interval = self.interval();
        if interval.is_zero() {
            return;
        }
        let wait = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// One GET, following redirects hop by hop: each hop waits for its slot and must be
    /// allowed by the gate.
    fn send(
        &self,
        url: &str,
        redirects: Redirects,
    ) -> Result<(reqwest::blocking::Response, Instant), Failed> {
        let err = |reason: String, status: Option<u16>| FetchError {
            url: url.to_string(),
            reason,
            status,
        };
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            if !self.allowed(&current) {
                let why = if current == url {
                    "disallowed by robots.txt".to_string()
                } else {
                    format!("redirected to {current}, which robots.txt disallows")
                };
                return Err((err(why, None), false, None));
            }
            self.wait_for_slot();
            self.requests.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            let resp = self.client.get(&current).send().map_err(|e| {
                let retry = e.is_timeout() || e.is_connect() || e.is_request();
                (err(format!("request failed: {e}"), None), retry, None)
            })?;
            if !resp.status().is_redirection() {
                return Ok((resp, started));
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resp.url().join(l).ok());
            match next {
                Some(n) if redirects == Redirects::SameOrigin && !same_origin(url, &n) => {
                    return Err((
                        err(format!("redirected off the site, to {n}"), None),
                        false,
                        None,
                    ));
                }
                Some(n) => current = n.to_string(),
                None => {
                    let status = resp.status();
                    return Err((
                        err(
                            format!("HTTP {status} without a usable Location"),
                            Some(status.as_u16()),
                        ),
                        false,
                        None,
                    ));
                }
            }
        }
        Err((
            err(format!("more than {MAX_REDIRECTS} redirects"), None),
            false,
            None,
        ))
    }

    fn once(&self, url: &str, max: u64, redirects: Redirects) -> Result<Vec<u8>, Failed> {
        let err = |reason: String, status: Option<u16>| FetchError {
            url: url.to_string(),
            reason,
            status,
        };
        let (resp, started) = self.send(url, redirects)?;
        let status = resp.status();
        if !status.is_success() {
            let retry = status.as_u16() == 429 || status.is_server_error();
            let after = retry_after(resp.headers());
            return Err((
                err(format!("HTTP {status}"), Some(status.as_u16())),
                retry,
                after,
            ));
        }
        if resp.content_length().is_some_and(|n| n > max) {
            return Err((
                err(
                    format!("response larger than the {max}-byte limit"),
                    Some(status.as_u16()),
                ),
                false,
                None,
            ));
        }
        let body = read_body_by(resp, max, started + self.policy.timeout).map_err(|e| {
            (
                err(
                    format!("reading the body failed: {e}"),
                    Some(status.as_u16()),
                ),
                true,
                None,
            )
        })?;
        if body.len() as u64 > max {
            return Err((
                err(
                    format!("response larger than the {max}-byte limit"),
                    Some(status.as_u16()),
                ),
                false,
                None,
            ));
        }
        Ok(body)
    }

    /// GET with retries. Non-retryable failures (404, oversized, …) return at once.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.get_limited(url, self.policy.max_bytes)
    }

    /// GET with retries whose redirects stay on the URL's own site.
    pub fn get_on_site(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.get_with(url, self.policy.max_bytes, Redirects::SameOrigin)
    }

    /// GET with retries and a specific size limit.
    pub fn get_limited(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        self.get_with(url, max_bytes, Redirects::Anywhere)
    }

    /// GET with retries, a size limit and a rule for redirects.
    pub fn get_with(
        &self,
        url: &str,
        max_bytes: u64,
        redirects: Redirects,
    ) -> Result<Vec<u8>, FetchError> {
        let mut attempt = 0;
        loop {
            match self.once(url, max_bytes, redirects) {
                Ok(body) => return Ok(body),
                Err((e, retryable, after)) => {
                    if !retryable || attempt >= self.policy.retries {
                        let tries = attempt + 1;
                        return Err(FetchError {
                            reason: if tries > 1 {
                                format!("{} (after {tries} attempts)", e.reason)
                            } else {
                                e.reason
                            },
                            ..e
                        });
                    }
                    let backoff = self.policy.backoff_base * 2u32.pow(attempt);
                    let jitter = Duration::from_millis(
                        rand::rng().random_range(0..=self.policy.backoff_base.as_millis() as u64),
                    );
                    let wait = match after {
                        Some(a) if a > self.policy.max_retry_after => {
                            return Err(FetchError {
                                reason: format!(
                                    "{}; Retry-After {}s exceeds the limit",
                                    e.reason,
                                    a.as_secs()
                                ),
                                ..e
                            });
                        }
                        Some(a) => {
                            // The server is overloaded: every worker holds back, not only
                            // the one that was told.
                            self.pause_all(a);
                            a.max(backoff)
                        }
                        None => backoff + jitter,
                    };
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}
