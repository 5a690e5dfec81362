//! Dynamic batching, as text-embeddings-inference and Triton do it: concurrent predictions on
//! one model go into a bounded queue served by the model's workers; a worker takes the first
//! waiting request, gathers more for at most `max_wait` (or until `max_batch`), and runs them
//! as one forward pass. Several workers (one per core by default) keep every core busy: on the
//! CPU backend a forward pass does not use all of them. A full queue is refused at once (503)
//! rather than queued without bound.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cinefuse_train::predictor::{ModelInput, MoviePrediction, Predictor};
use tokio::sync::oneshot;

/// How requests are gathered.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Requests waiting at most; more are refused.
    pub queue: usize,
    /// Worker threads per model, each running its own batches.
    pub workers: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_wait: Duration::from_millis(5),
            queue: 256,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl BatchLimits {
    /// `workers` when given, else the default.
    pub fn with_workers(self, workers: Option<u16>) -> Self {
        Self {
            workers: workers.map_or(self.workers, usize::from),
            ..self
        }
    }
}

struct Job {
    input: ModelInput,
    reply: oneshot::Sender<Result<MoviePrediction, String>>,
}

/// The queue in front of one model's worker.
pub struct BatchQueue {
    jobs: SyncSender<Job>,
}

/// Why a prediction did not come back.
#[derive(Debug, PartialEq)]
pub enum BatchError {
    /// The queue is full: try again later.
    Busy,
    Failed(String),
}

impl BatchQueue {
    /// Starts the worker threads of `predictor`; they end when the queue is dropped.
    pub fn start(predictor: Arc<Predictor>, limits: BatchLimits) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel(limits.queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..limits.workers.max(1) {
            let (predictor, queue) = (predictor.clone(), queue.clone());
            std::thread::Builder::new()
                .name("cinefuse-batch".into())
                .spawn(move || work(&predictor, &queue, limits))?;
        }
        Ok(Self { jobs })
    }

    /// Queues one movie and waits for its prediction.
    pub async fn predict(&self, input: ModelInput) -> Result<MoviePrediction, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { input, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => BatchError::Busy,
                TrySendError::Disconnected(_) => {
                    BatchError::Failed("the model's worker stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| BatchError::Failed("the model's worker stopped".into()))?
            .map_err(BatchError::Failed)
    }
}

/// The first waiting job, then whatever arrives within `max_wait`, up to `max_batch`. The
/// queue is held while gathering, so the other workers wait for the next batch.
fn gather(queue: &Mutex<Receiver<Job>>, limits: BatchLimits) -> Option<Vec<Job>> {
    let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
    let first = queue.recv().ok()?;
    let deadline = Instant::now() + limits.max_wait;
    let mut jobs = vec![first];
    while jobs.len() < limits.max_batch {
        let left = deadline.saturating_duration_since(Instant::now());
        match queue.recv_timeout(left) {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

fn work(predictor: &Predictor, queue: &Mutex<Receiver<Job>>, limits: BatchLimits) {
    while let Some(jobs) = gather(queue, limits) {
        let (inputs, replies): (Vec<ModelInput>, Vec<_>) =
            jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
        // A panic inside one batch fails its requests, not the worker (and so not the model).
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| predictor.predict(&inputs)));
        match outcome {
            Ok(predictions) => {
                for (reply, p) in replies.into_iter().zip(predictions) {
                    let _ = reply.send(Ok(p));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err("the prediction failed".into()));
                }
            }
        }
    }
}
