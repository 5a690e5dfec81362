//! The JSON API: `GET /api/runs`, `GET /api/runs/{id}/metrics`, `GET /api/models` and
//! `POST /api/predict` (JSON with an optional base64 poster, or a multipart form).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cinefuse_train::input_fields::movie_from_form;
use cinefuse_train::input_warnings::input_warnings;
use cinefuse_train::predictor::{MoviePrediction, movie_from_json};
use cinefuse_train::run_dir::EpochMetrics;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::batcher::BatchError;
use crate::runs;

/// A request the server refuses: its status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
    /// A file of the server's own that cannot be read (damaged, not the request's fault).
    pub fn unreadable(message: impl Into<String>) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub async fn list_runs(State(state): State<Arc<AppState>>) -> Json<Vec<runs::RunOverview>> {
    Json(runs::list(&state.runs))
}

pub async fn run_metrics(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<EpochMetrics>>, ApiError> {
    let dir = runs::run_dir(&state.runs, &id)
        .ok_or_else(|| ApiError::not_found(format!("no run {id:?}")))?;
    runs::metrics(&dir).map(Json).map_err(ApiError::unreadable)
}

pub async fn list_models(State(state): State<Arc<AppState>>) -> Json<Vec<String>> {
    Json(state.models.list())
}

/// `GET /health`: the server is up; which models are ready (loaded and warmed up).
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models = state.models.health();
    let ready = models.iter().all(|m| m.state == "ready");
    let skipped: Vec<Value> = state
        .models
        .skipped()
        .into_iter()
        .map(|(name, why)| json!({ "name": name, "why": why }))
        .collect();
    Json(json!({ "status": "ok", "all_models_ready": ready, "models": models, "skipped": skipped }))
}

/// A prediction request: the movie in the dataset format (without a poster path), and the
/// poster's bytes.
#[derive(Debug, Default)]
pub struct PredictRequest {
    pub model: Option<String>,
    /// A multipart form's movie fields as submitted (`title`, `votes`, `extra.NAME`, …).
    pub form: Vec<(String, String)>,
    pub movie: Value,
    pub poster: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    model: Option<String>,
    movie: Value,
    poster_base64: Option<String>,
}

impl PredictRequest {
    /// Reads a JSON body or a multipart form (fields `model`, `movie` as JSON text, or one field
    /// per movie field — `title`, `plot`, `year`, `votes`, `directors` (comma-separated), …,
    /// `extra.NAME` for the model's declared features; file field `poster`).
    pub async fn read(request: Request) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if content_type.starts_with("multipart/form-data") {
            let form = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError(e.status(), e.body_text()))?;
            return Self::from_form(form).await;
        }
        let Json(body): Json<JsonRequest> = Json::from_request(request, &())
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        let poster = body
            .poster_base64
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()))
            .transpose()
            .map_err(|e| ApiError::bad(format!("poster_base64: {e}")))?;
        Ok(Self {
            model: body.model,
            movie: body.movie,
            poster,
            form: Vec::new(),
        })
    }

    async fn from_form(mut form: Multipart) -> Result<Self, ApiError> {
        let mut request = Self {
            movie: json!({}),
            ..Default::default()
        };
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?
        {
            let name = field.name().unwrap_or("").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError(e.status(), e.body_text()))?;
            let text = || String::from_utf8_lossy(&bytes).trim().to_string();
            match name.as_str() {
                "poster" if !bytes.is_empty() => request.poster = Some(bytes.to_vec()),
                "poster" => {}
                "model" if !text().is_empty() => request.model = Some(text()),
                "movie" if !text().is_empty() => {
                    request.movie = serde_json::from_str(&text())
                        .map_err(|e| ApiError::bad(format!("movie: malformed JSON: {e}")))?
                }
                "model" | "movie" => {}
                // Movie fields: typed once the model (and so its extra features) is known.
                _ => request.form.push((name.clone(), text())),
            }
        }
        Ok(request)
    }
}

/// A prediction as the API and the page return it.
pub struct Answer {
    pub model: String,
    pub prediction: MoviePrediction,
    pub coverage: f64,
    /// What `predict` would warn about in the movie (`input_warnings.rs`).
    pub warnings: Vec<String>,
}

/// Runs one prediction: the model looked up (and loaded if need be) and the movie encoded on
/// blocking threads, the forward pass batched with concurrent requests by the model's worker.
pub async fn run_prediction(
    state: &Arc<AppState>,
    request: PredictRequest,
) -> Result<Answer, ApiError> {
    if request.movie.get("poster").is_some() {
        return Err(ApiError::bad(
            "movie.poster: the server reads no paths; send the image as poster_base64 or a multipart file",
        ));
    }
    let internal =
        |e: tokio::task::JoinError| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let lookup = state.clone();
    let model = request.model.clone();
    let (id, served) = tokio::task::spawn_blocking(move || lookup.models.get(model.as_deref()))
        .await
        .map_err(internal)?
        .map_err(ApiError::not_found)?;
    let mut movie_json = request.movie;
    if !request.form.is_empty() {
        let typed = movie_from_form(&served.predictor.input_fields(), &request.form)
            .map_err(ApiError::bad)?;
        if let (Some(into), Value::Object(from)) = (movie_json.as_object_mut(), typed) {
            into.extend(from);
        }
    }
    let movie = movie_from_json(&movie_json.to_string(), "movie")
        .map_err(|e| ApiError::bad(format!("{e:#}")))?;
    let predictor = served.predictor.clone();
    let poster = request.poster;
    // The warnings may encode the plot too: on the blocking thread, beside the movie's encoding.
    let (input, warnings) = tokio::task::spawn_blocking(move || {
        let p = &predictor;
        let warnings = input_warnings(&p.preprocessor, &movie, &p.handled());
        p.item_with_poster_bytes(&movie, poster.as_deref())
            .map(|input| (input, warnings))
            .map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(internal)?
    .map_err(ApiError::bad)?;
    let prediction = served.queue.predict(input).await.map_err(|e| match e {
        BatchError::Busy => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model {id:?} has too many predictions waiting; try again shortly"),
        ),
        BatchError::Failed(m) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, m),
    })?;
    Ok(Answer {
        model: id,
        prediction,
        coverage: served.predictor.manifest.interval_coverage,
        warnings,
    })
}

pub async fn predict(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let request = PredictRequest::read(request).await?;
    let a = run_prediction(&state, request).await?;
    Ok(Json(json!({
        "model": a.model,
        "interval_coverage": a.coverage,
        "prediction": a.prediction,
        "warnings": a.warnings,
    })))
}
