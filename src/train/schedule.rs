//! Learning-rate schedules with linear warm-up, evaluated per step.
use serde::{Deserialize, Serialize};

/// Decay after warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Decay {
    /// Constant learning rate.
    Constant,
    /// Multiply by `gamma` at each milestone epoch.
    Step { milestones: Vec<usize>, gamma: f64 },
    /// Cosine from the base rate to `min_lr` at the last step.
    Cosine,
}

/// `lr(step)`: linear warm-up from 0 over `warmup_steps`, then `decay`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
    pub decay: Decay,
}

impl Schedule {
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match &self.decay {
            Decay::Constant => self.base_lr,
            Decay::Step { milestones, gamma } => {
                let epoch = step / self.steps_per_epoch.max(1);
                self.base_lr * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            Decay::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                self.min_lr
                    + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn s(decay: Decay) -> Schedule {
        Schedule {
            base_lr: 0.1,
            min_lr: 0.0,
            warmup_steps: 10,
            steps_per_epoch: 10,
            total_steps: 100,
            decay,
        }
    }
    #[test]
    fn warmup_then_cosine() {
        let c = s(Decay::Cosine);
        assert!((c.lr(0) - 0.01).abs() < 1e-12);
        assert!((c.lr(9) - 0.1).abs() < 1e-12);
        assert!((c.lr(10) - 0.1).abs() < 1e-12);
        assert!((c.lr(55) - 0.05).abs() < 1e-9);
        assert!(c.lr(99) < 0.001);
    }
    #[test]
    fn step_decay() {
        let c = s(Decay::Step { milestones: vec![3, 6], gamma: 0.1 });
        assert!((c.lr(29) - 0.1).abs() < 1e-12);
        assert!((c.lr(30) - 0.01).abs() < 1e-12);
        assert!((c.lr(65) - 0.001).abs() < 1e-12);
    }
}
