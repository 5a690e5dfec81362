//! HTTP fetching: one shared client, a global rate limit, timeouts, a response-size cap and
//! retries with exponential backoff and jitter on 429/5xx/timeouts, honouring `Retry-After`.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub requests: AtomicUsize,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(policy.user_agent.clone())
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

    /// Blocks until this worker may send its next request.
    fn wait_for_slot(&self) {
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

    fn once(&self, url: &str, max: u64) -> Result<Vec<u8>, (FetchError, bool, Option<Duration>)> {
        self.wait_for_slot();
        self.requests.fetch_add(1, Ordering::SeqCst);
        let err = |reason: String, status: Option<u16>| FetchError {
            url: url.to_string(),
            reason,
            status,
        };
        let resp = self.client.get(url).send().map_err(|e| {
            let retry = e.is_timeout() || e.is_connect() || e.is_request();
            (err(format!("request failed: {e}"), None), retry, None)
        })?;
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
        let mut body = Vec::new();
        resp.take(max + 1).read_to_end(&mut body).map_err(|e| {
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

    /// GET with retries and a specific size limit.
    pub fn get_limited(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let mut attempt = 0;
        loop {
            match self.once(url, max_bytes) {
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
                        Some(a) => a.max(backoff),
                        None => backoff + jitter,
                    };
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}
