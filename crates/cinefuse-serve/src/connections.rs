//! Accepting connections with the limits a production HTTP server has: a cap on open
//! connections (one over it is closed at once, so idle sockets cannot exhaust the file
//! descriptors), a deadline for each request's headers (which also closes idle keep-alive
//! connections) and one for the whole request, body included (a client that drips its body
//! gets 408). Every response says `nosniff`: JSON is never rendered as HTML.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long and how many.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once.
    pub max_connections: usize,
    /// From the moment the server waits for a request to its last header byte.
    pub header_timeout: Duration,
    /// From the first header byte to the response: reading the body and answering.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Wraps every request in `limit`'s deadline.
pub fn with_request_timeout(app: Router, limit: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| request_deadline(req, next, limit),
    ))
}

async fn request_deadline(req: Request, next: Next, limit: Duration) -> Response {
    let mut response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {} s", limit.as_secs()),
        )
            .into_response(),
    };
    // A JSON error that echoes a request's text is never sniffed and rendered as HTML.
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before it was accepted: pause
                // instead of spinning, then go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(permit);
        });
    }
}
