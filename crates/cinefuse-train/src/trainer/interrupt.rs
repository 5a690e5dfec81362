//! Ctrl-C and SIGTERM: the first asks the run to stop after a checkpoint, the second exits.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the handler; the training loop checks it after every step.
pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Installs the Ctrl-C / SIGTERM handler once per process.
pub fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: writing a checkpoint, then stopping (Ctrl-C again to abort)");
        });
    });
}

/// Whether Ctrl-C (or SIGTERM) asked the run to stop: a bag or blend checks it between its
/// stages (members, calibration, the blend's learning), which no epoch loop covers.
pub fn interrupt_requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Why a blend's learning or a bag's calibration stopped: Ctrl-C (in `train`, whose handler
/// sets the flag) before `stage`. Nothing is written; `train --resume` learns it again.
#[derive(Debug)]
pub struct LearningInterrupted {
    pub stage: &'static str,
}

impl std::fmt::Display for LearningInterrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted before {}", self.stage)
    }
}

impl std::error::Error for LearningInterrupted {}

/// `LearningInterrupted` before `stage` when Ctrl-C asked the run to stop: checked between the
/// stages of a blend's learning and between the members' held-out predictions, which with a
/// fine-tuned bag take minutes and which no epoch loop covers.
pub(crate) fn stop_if_interrupted(stage: &'static str) -> anyhow::Result<()> {
    if interrupt_requested() {
        return Err(LearningInterrupted { stage }.into());
    }
    Ok(())
}
