//! `cinefuse serve`: a local web app to browse and compare runs and to predict with exported
//! models, and a JSON API for predictions. Built on axum and tokio; pages are rendered on the
//! server (minijinja templates, SVG charts), with no JavaScript.

pub mod api;
pub mod batcher;
pub mod connections;
pub mod models;
pub mod pages;
pub mod runs;
pub mod svg;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

/// Where the server looks and listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub runs: PathBuf,
    pub models: PathBuf,
    pub addr: SocketAddr,
    /// The largest request body accepted (a poster upload), in bytes.
    pub max_upload: usize,
    /// Connection cap and timeouts.
    pub limits: connections::Limits,
    /// How concurrent predictions on one model are batched.
    pub batch: batcher::BatchLimits,
}

/// What every request handler shares.
pub struct AppState {
    pub runs: PathBuf,
    pub models_dir: PathBuf,
    pub models: models::Models,
    pub templates: minijinja::Environment<'static>,
}

/// Every route of the app.
pub fn router(config: &ServeConfig) -> Router {
    let state = Arc::new(AppState {
        runs: config.runs.clone(),
        models_dir: config.models.clone(),
        models: models::Models::new(&config.models, config.batch),
        templates: pages::templates(),
    });
    // Every model loads and warms up in the background; `/health` says when each is ready.
    let preload = state.clone();
    let _ = std::thread::Builder::new()
        .name("cinefuse-load".into())
        .spawn(move || preload.models.load_all());
    let app = Router::new()
        .route("/", get(pages::runs_page))
        .route("/runs/{id}", get(pages::run_page))
        .route("/compare", get(pages::compare_page))
        .route(
            "/predict",
            get(pages::predict_form).post(pages::predict_submit),
        )
        .route("/api/runs", get(api::list_runs))
        .route("/api/runs/{id}/metrics", get(api::run_metrics))
        .route("/api/models", get(api::list_models))
        .route("/health", get(api::health))
        .route("/api/predict", post(api::predict))
        .fallback(|| async { api::ApiError::not_found("no such page") })
        .layer(DefaultBodyLimit::max(config.max_upload))
        .with_state(state);
    connections::with_request_timeout(app, config.limits.request_timeout)
}

/// Serves until Ctrl-C. Prints `listening on http://ADDR` (with the real port when the
/// configured one is 0) once the socket is bound.
pub fn serve(config: ServeConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        println!(
            "runs: {}  models: {}",
            folder_line(&config.runs),
            folder_line(&config.models)
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        connections::serve(listener, router(&config), config.limits, shutdown).await;
        Ok(())
    })
}

/// A folder the server lists, as the startup line shows it: one that is not there yet is
/// listed as empty until it appears, and the user is told so rather than left to wonder.
fn folder_line(dir: &std::path::Path) -> String {
    if dir.is_dir() {
        dir.display().to_string()
    } else {
        format!("{} (not a folder yet: nothing to list)", dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named_as_such_at_startup() {
        let here = std::env::temp_dir();
        assert_eq!(folder_line(&here), here.display().to_string());
        let missing = here.join(format!("cinefuse-{}-no-runs", std::process::id()));
        assert!(folder_line(&missing).ends_with("-no-runs (not a folder yet: nothing to list)"));
    }
}
