//! `serve`: the local web app and JSON API (see cinefuse-serve).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// The runs folder to show.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// The folder of exported models to predict with.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request accepted (a poster upload), in MiB (1 to 200).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=200))]
    max_upload_mb: u16,
    /// Open connections at once; more are closed as they arrive.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Seconds a client has to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    header_timeout_s: u32,
    /// Seconds from a request's headers to its answer, body upload included.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    request_timeout_s: u32,
    /// Most predictions of one model gathered into one forward pass (1: no batching).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    max_batch: u16,
    /// Milliseconds the first request of a batch waits for others to join it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(0..=1000))]
    max_batch_wait_ms: u16,
    /// Worker threads per model, each running its own batches (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch_workers: Option<u16>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    if !a.addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {} makes runs and models readable from other machines",
            a.addr
        );
    }
    cinefuse_serve::serve(cinefuse_serve::ServeConfig {
        runs: a.runs,
        models: a.models,
        addr: a.addr,
        max_upload: usize::from(a.max_upload_mb) << 20,
        limits: cinefuse_serve::connections::Limits {
            max_connections: a.max_connections as usize,
            header_timeout: Duration::from_secs(a.header_timeout_s.into()),
            request_timeout: Duration::from_secs(a.request_timeout_s.into()),
        },
        batch: cinefuse_serve::batcher::BatchLimits {
            max_batch: a.max_batch.into(),
            max_wait: Duration::from_millis(a.max_batch_wait_ms.into()),
            ..cinefuse_serve::batcher::BatchLimits::default()
        }
        .with_workers(a.batch_workers),
    })
}
