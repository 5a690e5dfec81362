//! The HTML pages: runs (sortable, live while a run trains), one run, a comparison of runs,
//! and the prediction form with its result.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use cinefuse_train::bootstrap::Confidence;
use cinefuse_train::run_dir::{CONFIG_FILE, EpochMetrics};
use minijinja::{Environment, context};
use serde::Serialize;
use serde_json::Value;

use crate::api::{Answer, ApiError, PredictRequest, run_prediction};
use crate::{AppState, runs, svg};

/// The templates, compiled into the binary.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    // Every template escapes for HTML, whatever its name: request-derived strings (a run id
    // from the URL, form fields) are echoed into pages.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (name, text) in [
        ("base.html", include_str!("../templates/base.html")),
        ("runs.html", include_str!("../templates/runs.html")),
        ("run.html", include_str!("../templates/run.html")),
        ("compare.html", include_str!("../templates/compare.html")),
        ("predict.html", include_str!("../templates/predict.html")),
        ("error.html", include_str!("../templates/error.html")),
    ] {
        env.add_template(name, text).expect("templates parse");
    }
    env
}

fn render(state: &AppState, name: &str, ctx: minijinja::Value) -> Response {
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template {name}: {e}"),
        )
            .into_response(),
    }
}

fn page_error(state: &AppState, status: StatusCode, message: &str) -> Response {
    let html = state
        .templates
        .get_template("error.html")
        .and_then(|t| t.render(context! { title => "error", message }));
    match html {
        Ok(html) => (status, Html(html)).into_response(),
        // Never the message as HTML without its template's escaping.
        Err(_) => (status, message.to_string()).into_response(),
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// UTC `YYYY-MM-DD HH:MM` of a Unix time.
fn date(unix: u64) -> String {
    if unix == 0 {
        return "–".into();
    }
    let stamp = cinefuse_train::run_dir::timestamp_of(unix);
    format!(
        "{}-{}-{} {}:{}",
        &stamp[..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13]
    )
}

#[derive(Serialize, Default)]
struct Row {
    id: String,
    status: String,
    status_kind: String,
    started: String,
    started_unix: u64,
    backend: String,
    epochs: usize,
    best_epoch: Option<usize>,
    val_loss: String,
    val_micro_f1: String,
    val_mae: String,
    /// Hover text of the validation scores (a bag's or blend's are out of fold).
    val_note: String,
    test_micro_f1: String,
    test_top1: String,
    test_mae: String,
    /// "95 % CI a–b" of each test metric (empty without intervals), shown on hover.
    test_micro_f1_ci: String,
    test_top1_ci: String,
    test_mae_ci: String,
}

const COLUMNS: [(&str, &str); 12] = [
    ("id", "run"),
    ("status", "status"),
    ("started", "started"),
    ("backend", "backend"),
    ("epochs", "epochs"),
    ("best_epoch", "best epoch"),
    ("val_loss", "val loss"),
    ("val_micro_f1", "val micro-F1"),
    ("val_mae", "val MAE"),
    ("test_micro_f1", "test micro-F1"),
    ("test_top1", "test top-1"),
    ("test_mae", "test MAE"),
];

/// A test metric's bootstrap interval as the runs table's hover text.
fn ci(confidence: Option<&Confidence>, metric: &str) -> String {
    confidence
        .and_then(|c| c.get(metric).map(|[lo, hi]| (c.level, lo, hi)))
        .map(|(level, lo, hi)| format!("{:.0} % CI {lo:.3}–{hi:.3}", level * 100.0))
        .unwrap_or_default()
}

impl Row {
    /// A run's line of the runs table, its numbers formatted for the page.
    fn of(r: runs::RunOverview) -> Row {
        Row {
            started: date(r.started_unix),
            started_unix: r.started_unix,
            // A bag or blend has no validation loss of its own (its scores are out of fold).
            val_loss: num(
                r.best
                    .as_ref()
                    .filter(|_| r.out_of_fold.is_none())
                    .map(|b| b.val_loss),
                4,
            ),
            val_micro_f1: match &r.out_of_fold {
                Some(o) => num(Some(o.micro_f1), 3),
                None => num(r.best.as_ref().map(|b| b.val_micro_f1), 3),
            },
            val_mae: match &r.out_of_fold {
                Some(o) => num(Some(o.mae), 3),
                None => num(r.best.as_ref().map(|b| b.val_mae), 3),
            },
            val_note: if r.out_of_fold.is_some() {
                "out of fold: every train + validation movie, by the member that did not train \
                 on it"
                    .into()
            } else {
                String::new()
            },
            test_micro_f1: num(r.test.as_ref().map(|t| t.micro_f1), 3),
            test_top1: num(r.test.as_ref().map(|t| t.top1), 3),
            test_mae: num(r.test.as_ref().map(|t| t.mae), 3),
            // A damaged eval.json shows "–" with the reason on hover.
            test_micro_f1_ci: r
                .test_error
                .clone()
                .unwrap_or_else(|| ci(r.test_confidence.as_ref(), "micro_f1")),
            test_top1_ci: ci(r.test_confidence.as_ref(), "top1"),
            test_mae_ci: ci(r.test_confidence.as_ref(), "mae"),
            id: r.id,
            status: r.status,
            status_kind: r.status_kind,
            backend: r.backend,
            epochs: r.epochs,
            best_epoch: r.best_epoch,
        }
    }
}

/// `rows` by column `sort` (a `Row` field; "started" is the start time): numbers by value,
/// anything else by its text.
fn sorted_rows(rows: Vec<Row>, sort: &str, desc: bool) -> Vec<Row> {
    let field = if sort == "started" {
        "started_unix"
    } else {
        sort
    };
    let key = |r: &Row| -> (f64, String) {
        let v = serde_json::to_value(r).unwrap_or_default();
        match &v[field] {
            Value::Number(n) => (n.as_f64().unwrap_or(0.0), String::new()),
            Value::String(s) => (s.parse().unwrap_or(f64::NAN), s.clone()),
            _ => (f64::NAN, String::new()),
        }
    };
    // Each row's key once, not once per comparison.
    let mut keyed: Vec<((f64, String), Row)> = rows.into_iter().map(|r| (key(&r), r)).collect();
    keyed.sort_by(|(ka, _), (kb, _)| {
        let order = if ka.0.is_nan() || kb.0.is_nan() {
            ka.1.cmp(&kb.1)
        } else {
            ka.0.total_cmp(&kb.0)
        };
        if desc { order.reverse() } else { order }
    });
    keyed.into_iter().map(|(_, r)| r).collect()
}

pub async fn runs_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rows: Vec<Row> = runs::list(&state.runs).into_iter().map(Row::of).collect();
    let sort = query
        .get("sort")
        .cloned()
        .unwrap_or_else(|| "started".into());
    let desc = query.contains_key("desc");
    let rows = sorted_rows(rows, &sort, desc);
    let training = rows.iter().any(|r| r.status == "training");
    let columns: Vec<_> = COLUMNS
        .iter()
        .map(|(key, label)| context! { key, label })
        .collect();
    render(
        &state,
        "runs.html",
        context! {
            title => "runs", runs => rows, columns, sort, desc,
            runs_dir => state.runs.display().to_string(),
            refresh => if training { Some(5) } else { None },
        },
    )
}

/// A value of an epoch's metrics, named as in `metrics.jsonl` for the chart's legend.
type Metric = (&'static str, fn(&EpochMetrics) -> f64);

const TRAIN_LOSS: Metric = ("train_loss", |m| m.train_loss);
const VAL_LOSS: Metric = ("val_loss", |m| m.val_loss);
const VAL_MICRO_F1: Metric = ("val_micro_f1", |m| m.val_micro_f1);
const VAL_MACRO_F1: Metric = ("val_macro_f1", |m| m.val_macro_f1);
const VAL_TOP1: Metric = ("val_top1", |m| m.val_top1);
const VAL_MAE: Metric = ("val_mae", |m| m.val_mae);

/// One (epoch, value) curve per metric; epochs without a number are left out.
fn series(history: &[EpochMetrics], metrics: &[Metric]) -> Vec<(String, Vec<(f64, f64)>)> {
    metrics
        .iter()
        .map(|(name, value)| {
            let points = history
                .iter()
                .map(|m| (m.epoch as f64, value(m)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            (name.to_string(), points)
        })
        .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
        .collect()
}

pub async fn run_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(dir) = runs::run_dir(&state.runs, &id) else {
        return page_error(&state, StatusCode::NOT_FOUND, &format!("no run {id:?}"));
    };
    let run = runs::summarize(&id, &dir);
    let (history, metrics_error) = match runs::metrics(&dir) {
        Ok(h) => (h, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let genres = dir
        .test_evaluation()
        .ok()
        .flatten()
        .map(|e| e.genres.per_genre)
        .unwrap_or_default();
    let genre_chart = (!genres.is_empty()).then(|| {
        let rows: Vec<(String, f64)> = genres.iter().map(|g| (g.genre.clone(), g.f1)).collect();
        svg::bars(
            "Per-genre F1 (test, thresholds tuned on validation)",
            &rows,
            1.0,
        )
    });
    let predictions: Value = runs::read_run_file(&dir.path().join("eval_predictions.json"))
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let (rating_chart, weight_chart) = (rating_chart(&predictions), weight_chart(&predictions));
    let live = run.status == "training";
    render(
        &state,
        "run.html",
        context! {
            title => id.clone(), run,
            loss_chart => svg::lines("Loss", "epoch", &series(&history, &[TRAIN_LOSS, VAL_LOSS])),
            metric_chart => svg::lines("Validation genres", "epoch", &series(&history, &[VAL_MICRO_F1, VAL_MACRO_F1, VAL_TOP1])),
            mae_chart => svg::lines("Validation rating MAE", "epoch", &series(&history, &[VAL_MAE])),
            genre_chart, genres, rating_chart, weight_chart, metrics_error,
            config => runs::read_run_file(&dir.path().join(CONFIG_FILE)).unwrap_or_default(),
            refresh => if live { Some(5) } else { None },
        },
    )
}

/// Predicted against actual rating from `eval_predictions.json`'s `ratings` pairs; `None`
/// without any.
fn rating_chart(predictions: &Value) -> Option<String> {
    let points: Vec<(f64, f64)> = predictions["ratings"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    (!points.is_empty()).then(|| svg::scatter("Predicted vs actual rating (test)", &points))
}

/// The fusion's mean weight per modality from `eval_predictions.json`; `None` without them.
fn weight_chart(predictions: &Value) -> Option<String> {
    let weights: Vec<(String, f64)> = predictions["modalities"]
        .as_array()
        .zip(predictions["mean_weights"].as_array())
        .map(|(m, w)| {
            m.iter()
                .zip(w)
                .map(|(m, w)| {
                    (
                        m.as_str().unwrap_or("").to_string(),
                        w.as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (!weights.is_empty())
        .then(|| svg::bars("Mean fusion weight per modality (test)", &weights, 1.0))
}

/// The most runs one comparison shows.
pub const MAX_COMPARED_RUNS: usize = 20;

pub async fn compare_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let ids: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "run")
        .map(|(_, v)| v)
        .collect();
    if ids.len() < 2 {
        return page_error(
            &state,
            StatusCode::BAD_REQUEST,
            "pick at least two runs to compare",
        );
    }
    // Each run's files are read once per chart: a long query repeating one run would read
    // them thousands of times, and more lines than this make no readable chart.
    if ids.len() > MAX_COMPARED_RUNS {
        let why = format!("pick at most {MAX_COMPARED_RUNS} runs to compare");
        return page_error(&state, StatusCode::BAD_REQUEST, &why);
    }
    if let Some(i) = (1..ids.len()).find(|&i| ids[..i].contains(&ids[i])) {
        let why = format!("run {:?} is picked twice", ids[i]);
        return page_error(&state, StatusCode::BAD_REQUEST, &why);
    }
    let mut dirs = Vec::new();
    for id in &ids {
        match runs::run_dir(&state.runs, id) {
            Some(d) => dirs.push(d),
            None => return page_error(&state, StatusCode::NOT_FOUND, &format!("no run {id:?}")),
        }
    }
    let curves = |metric: Metric| -> Vec<(String, Vec<(f64, f64)>)> {
        ids.iter()
            .zip(&dirs)
            .map(|(id, d)| {
                let s = series(&runs::metrics(d).unwrap_or_default(), &[metric]);
                (
                    id.clone(),
                    s.into_iter().next().map(|(_, p)| p).unwrap_or_default(),
                )
            })
            .collect()
    };
    render(
        &state,
        "compare.html",
        context! {
            title => "compare", ids,
            loss_chart => svg::lines("Validation loss", "epoch", &curves(VAL_LOSS)),
            metric_chart => svg::lines("Validation micro-F1", "epoch", &curves(VAL_MICRO_F1)),
            diff => runs::config_diff(&dirs),
        },
    )
}

/// The fields the model `id` reads, with `values` filled in; none when it is not loaded
/// (`load` loads it: only off the async threads).
fn form_fields(
    state: &AppState,
    id: Option<&str>,
    values: &[(String, String)],
    load: bool,
) -> Vec<minijinja::Value> {
    let served = match load {
        true => state.models.get(id).ok().map(|(_, s)| s),
        false => state.models.ready(id),
    };
    let Some(served) = served else {
        return Vec::new();
    };
    served
        .predictor
        .input_fields()
        .into_iter()
        .map(|f| {
            let value = values
                .iter()
                .find(|(k, _)| *k == f.name)
                .map_or("", |(_, v)| v.as_str());
            minijinja::Value::from_serialize(context! { field => f, value })
        })
        .collect()
}

/// `GET /predict[?model=NAME]`: the form with the fields of the chosen model.
pub async fn predict_form(
    State(state): State<Arc<AppState>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let model = query.get("model").cloned();
    let state2 = state.clone();
    let chosen = model.clone();
    // Loading a model is CPU and disk work: off the async threads.
    let fields =
        tokio::task::spawn_blocking(move || form_fields(&state2, chosen.as_deref(), &[], true))
            .await
            .unwrap_or_default();
    render(
        &state,
        "predict.html",
        context! {
            title => "predict", models => state.models.list(), model, fields,
            models_dir => state.models_dir.display().to_string(),
        },
    )
}

pub async fn predict_submit(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let models = state.models.list();
    let (chosen, form, result) = match PredictRequest::read(request).await {
        Ok(r) => {
            let (chosen, form) = (r.model.clone(), r.form.clone());
            (chosen, form, run_prediction(&state, r).await)
        }
        Err(e) => (None, Vec::new(), Err(e)),
    };
    let models_dir = state.models_dir.display().to_string();
    match result {
        Ok(Answer {
            model,
            prediction,
            coverage,
            warnings,
        }) => {
            let fields = form_fields(&state, Some(&model), &form, false);
            let genres: Vec<(String, f64)> = prediction
                .genres
                .iter()
                .take(8)
                .map(|g| (g.genre.clone(), f64::from(g.probability)))
                .collect();
            let shares: Vec<(String, f64)> = prediction
                .contributions
                .iter()
                .map(|c| (c.modality.name().to_string(), f64::from(c.share)))
                .collect();
            render(
                &state,
                "predict.html",
                context! {
                    title => "prediction", models, model, coverage, fields, models_dir, warnings,
                    genre_chart => svg::bars("Genre probabilities", &genres, 1.0),
                    contribution_chart => svg::bars(&format!("Contributions ({})", prediction.contribution_method), &shares, 1.0),
                    prediction,
                },
            )
        }
        Err(ApiError(status, message)) => {
            // The form again, with what was typed, above the error.
            let fields = form_fields(&state, chosen.as_deref(), &form, false);
            let html = state.templates.get_template("predict.html").and_then(|t| {
                t.render(context! {
                    title => "predict", models, model => chosen, error => message, fields, models_dir,
                })
            });
            match html {
                Ok(h) => (status, Html(h)).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let row = |id: &str, started_unix, val_loss: &str| Row {
            id: id.into(),
            started_unix,
            val_loss: val_loss.into(),
            ..Default::default()
        };
        vec![
            row("b", 30, "9.0000"),
            row("a", 10, "–"),
            row("c", 20, "0.1250"),
            row("d", 40, "10.0000"),
        ]
    }

    fn ids(rows: Vec<Row>) -> Vec<String> {
        rows.into_iter().map(|r| r.id).collect()
    }

    /// "started" sorts by the start time; a column of formatted numbers by value, not by
    /// text ("10" after "9"), a run without the number last; `desc` reverses.
    #[test]
    fn runs_sort_by_value_with_missing_numbers_last() {
        assert_eq!(
            ids(sorted_rows(rows(), "started", false)),
            ["a", "c", "b", "d"]
        );
        assert_eq!(
            ids(sorted_rows(rows(), "val_loss", false)),
            ["c", "b", "d", "a"]
        );
        assert_eq!(
            ids(sorted_rows(rows(), "val_loss", true)),
            ["a", "d", "b", "c"]
        );
        assert_eq!(ids(sorted_rows(rows(), "id", false)), ["a", "b", "c", "d"]);
        // An unknown column leaves the order as listed (every key equal).
        assert_eq!(
            ids(sorted_rows(rows(), "nope", false)),
            ["b", "a", "c", "d"]
        );
    }
}
