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
