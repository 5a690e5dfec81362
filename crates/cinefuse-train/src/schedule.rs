//! Learning-rate schedule: linear warmup, then cosine, step or constant. A pure function of
//! the step, so resuming at step N continues exactly where the run stopped.

use crate::config::{ScheduleConfig, ScheduleKind};

pub fn learning_rate(
    c: &ScheduleConfig,
    peak: f64,
    step: usize,
    total_steps: usize,
    steps_per_epoch: usize,
) -> f64 {
    if c.warmup_steps > 0 && step < c.warmup_steps {
        return peak * (step + 1) as f64 / c.warmup_steps as f64;
    }
    match c.kind {
        ScheduleKind::Constant => peak,
        ScheduleKind::Cosine => {
            let span = total_steps.saturating_sub(c.warmup_steps).max(1) as f64;
            let t = ((step.saturating_sub(c.warmup_steps)) as f64 / span).min(1.0);
            let min = peak * c.min_lr_ratio;
            min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * t).cos())
        }
        ScheduleKind::Step => {
            let epoch = step / steps_per_epoch.max(1);
            peak * c.gamma.powi((epoch / c.step_epochs.max(1)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            step_epochs: 2,
            gamma: 0.5,
        }
    }

    #[test]
    fn warmup_then_cosine_reaches_min() {
        let c = cfg(ScheduleKind::Cosine);
        assert!((learning_rate(&c, 1.0, 0, 110, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 9, 110, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 10, 110, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 60, 110, 10) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 110, 110, 10) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn step_decay_halves_every_two_epochs() {
        let c = cfg(ScheduleKind::Step);
        assert_eq!(learning_rate(&c, 1.0, 15, 100, 10), 1.0);
        assert_eq!(learning_rate(&c, 1.0, 25, 100, 10), 0.5);
        assert_eq!(learning_rate(&c, 1.0, 45, 100, 10), 0.25);
    }
}
