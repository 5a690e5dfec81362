//! The JSON API: `GET /api/runs`, `GET /api/runs/{id}/metrics`, `GET /api/models` and
//! `POST /api/predict` (JSON with an optional base64 poster, or a multipart form).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cinefuse_train::predict::{MoviePrediction, movie_from_json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub async fn list_runs(State(state): State<Arc<AppState>>) -> Json<Vec<runs::RunSummary>> {
    Json(runs::list(&state.runs))
}

pub async fn run_metrics(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let dir = runs::run_dir(&state.runs, &id)
        .ok_or_else(|| ApiError::not_found(format!("no run {id:?}")))?;
    Ok(Json(runs::metrics(&dir)))
}

pub async fn list_models(State(state): State<Arc<AppState>>) -> Json<Vec<String>> {
    Json(state.models.list())
}

/// A prediction request: the movie in the dataset format (without a poster path), and the
/// poster's bytes.
#[derive(Debug, Default)]
pub struct PredictRequest {
    pub model: Option<String>,
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
    /// Reads a JSON body or a multipart form (fields `model`, `movie` as JSON text, or `title`,
    /// `plot`, `year`, `runtime_min`; file field `poster`).
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
                "title" | "plot" if !text().is_empty() => {
                    request.movie[name.as_str()] = Value::String(text());
                }
                "year" | "runtime_min" if !text().is_empty() => {
                    // `json!` turns NaN and infinities into null, which would read as
                    // "missing": they are refused here instead.
                    let n: f64 = text()
                        .parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite())
                        .ok_or_else(|| {
                            ApiError::bad(format!("{name}: {:?} is not a finite number", text()))
                        })?;
                    request.movie[name.as_str()] = json!(n);
                }
                "model" | "movie" | "title" | "plot" | "year" | "runtime_min" => {}
                other => return Err(ApiError::bad(format!("unknown form field {other:?}"))),
            }
        }
        Ok(request)
    }
}

/// Runs one prediction (on a blocking thread: it is CPU work).
pub async fn run_prediction(
    state: &Arc<AppState>,
    request: PredictRequest,
) -> Result<(String, MoviePrediction, f64), ApiError> {
    if request.movie.get("poster").is_some() {
        return Err(ApiError::bad(
            "movie.poster: the server reads no paths; send the image as poster_base64 or a multipart file",
        ));
    }
    let (id, predictor) = state
        .models
        .get(request.model.as_deref())
        .map_err(ApiError::not_found)?;
    let movie = movie_from_json(&request.movie.to_string(), "movie")
        .map_err(|e| ApiError::bad(format!("{e:#}")))?;
    let result = tokio::task::spawn_blocking(move || {
        let p = &predictor;
        let item = p
            .item_with_poster_bytes(&movie, request.poster.as_deref())
            .map_err(|e| format!("{e:#}"))?;
        let prediction = p.predict(&[item]).remove(0);
        Ok::<_, String>((prediction, p.manifest.interval_coverage))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(ApiError::bad)?;
    Ok((id, result.0, result.1))
}

pub async fn predict(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let request = PredictRequest::read(request).await?;
    let (model, prediction, coverage) = run_prediction(&state, request).await?;
    Ok(Json(json!({
        "model": model,
        "interval_coverage": coverage,
        "prediction": prediction,
    })))
}
