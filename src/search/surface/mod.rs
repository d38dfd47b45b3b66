//! Synthetic accuracy surfaces for `rlal bench agent`: an accuracy for every
//! width vector of a graph's real [`Budget`], with an optimum under the budget
//! that is known exactly (dynamic programming) or bounded by a long reference
//! search ([`optimum`]).
//!
//! acc(t, k) = base(t) − Σ_l [s_l(t)·f_l^p_l + cliff_l(k_l)] − Σ_pairs w·f_i·f_j,
//!
//! f_l = removed fraction of layer l; the sensitivities s_l spread over two
//! orders of magnitude and drift with the epoch t (their ranking changes: the
//! non-stationarity the environment model exists for). The [`Family`] decides
//! where s_l, the cliffs and the pairs come from ([`families`]). A
//! [`SurfaceRun`] turns values into rewards as one run sees them: binomial noise
//! of a reward subset of `reward-samples` images, independent per reward or
//! correlated within an epoch ([`Noise`]), and optionally a reward that rises
//! near the architecture the weights are aligned to (`alignment-feedback`).
//! Regret is always measured on the noise-free, feedback-free final surface.
mod families;
mod optimum;

pub use optimum::{optimum, reference_search, Optimum};

use crate::agent::Budget;
use crate::rng::{mix64, Rng};
use serde::Serialize;

/// Where the layers' sensitivities, cliffs and interactions come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Sensitivities drawn independently of the layers (log-uniform over [0.01, 1]),
    /// `pairs` disjoint interacting pairs of consecutive layers.
    Separable,
    /// Sensitivity = a random linear function of what the agent's state shows of a
    /// layer (depth, input and output width, stride, kernel, MACs) plus an
    /// idiosyncratic part with `idiosyncratic` of the log-sensitivity's variance.
    Features,
    /// Separable, and the least sensitive `cliff-layers` of the layers collapse
    /// (`cliff-drop` accuracy) below a hidden width under uniform pruning's.
    Cliff,
    /// Pairwise terms over at least half of the layers, non-adjacent pairs
    /// included: no exact optimum (reference search).
    Coupled,
}

/// How the rewards of one run are noisy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Noise {
    /// Every reward draws its own binomial noise.
    Independent,
    /// One offset per epoch (sd `epoch-sd`) shared by all of its rewards, plus
    /// binomial noise that is the same for the same architecture in the same epoch.
    Correlated,
}

/// Settings of the synthetic surface and of the run effects.
#[derive(Clone, Debug, Serialize)]
pub struct SurfaceConfig {
    pub family: Family,
    /// Images of the reward subset (binomial noise of the rewards).
    pub reward_samples: usize,
    /// Each sensitivity is s_l·(1 + drift·φ_l·(1 − t/(T−1))), φ_l uniform in [−1, 1].
    pub drift: f64,
    /// Accuracy that uniform pruning to the budget loses on the final surface.
    pub uniform_drop: f64,
    /// Disjoint pairs of consecutive layers whose pruning interacts (not `coupled`).
    pub pairs: usize,
    /// `features`: share of the log-sensitivity's variance that no state feature explains.
    pub idiosyncratic: f64,
    /// `cliff`: accuracy lost below a cliff, and the fraction of layers with one.
    pub cliff_drop: f64,
    pub cliff_layers: f64,
    pub noise: Noise,
    /// `correlated`: standard deviation of the per-epoch reward offset.
    pub epoch_sd: f64,
    /// Whether the alignment target's reward (and its neighbours') rises with the
    /// epochs it has been the target: by up to `feedback-gain`, with time constant
    /// `feedback-epochs`, falling off as exp(−d/`feedback-radius`), d = mean
    /// |Δ kept fraction| over the layers.
    pub alignment_feedback: bool,
    pub feedback_gain: f64,
    pub feedback_epochs: f64,
    pub feedback_radius: f64,
}

impl Default for SurfaceConfig {
    fn default() -> Self {
        SurfaceConfig {
            family: Family::Separable,
            reward_samples: 5000,
            drift: 0.8,
            uniform_drop: 0.08,
            pairs: 3,
            idiosyncratic: 0.25,
            cliff_drop: 0.25,
            cliff_layers: 0.5,
            noise: Noise::Independent,
            epoch_sd: 0.01,
            alignment_feedback: false,
            feedback_gain: 0.02,
            feedback_epochs: 10.0,
            feedback_radius: 0.05,
        }
    }
}

impl SurfaceConfig {
    /// The first setting out of range, as a message that starts with its name.
    pub fn check(&self) -> Result<(), String> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        let checks = [
            (self.drift >= 0.0, "drift must be >= 0"),
            (self.uniform_drop > 0.0 && self.uniform_drop < 1.0, "uniform-drop must be in (0, 1)"),
            (unit(self.idiosyncratic), "idiosyncratic must be in [0, 1]"),
            (
                unit(self.cliff_drop) && unit(self.cliff_layers),
                "cliff-drop and cliff-layers must be in [0, 1]",
            ),
            (
                self.epoch_sd >= 0.0 && self.feedback_gain >= 0.0,
                "epoch-sd and feedback-gain must be >= 0",
            ),
            (
                self.feedback_epochs > 0.0 && self.feedback_radius > 0.0,
                "feedback-epochs and feedback-radius must be > 0",
            ),
        ];
        match checks.iter().find(|c| !c.0) {
            Some((_, m)) => Err(m.to_string()),
            None => Ok(()),
        }
    }
}

/// Layers i and j (i < j) interact: w·f_i·f_j more loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub i: usize,
    pub j: usize,
    pub w: f64,
}

/// A synthetic accuracy surface over the budget's layers (see the module documentation).
#[derive(Clone, Debug)]
pub struct Surface {
    epochs: usize,
    channels: Vec<usize>,
    sens: Vec<f64>,
    phi: Vec<f64>,
    power: Vec<f64>,
    pairs: Vec<Pair>,
    /// Per layer: accuracy collapses below this width (0: no cliff).
    cliffs: Vec<usize>,
    cfg: SurfaceConfig,
}

impl Surface {
    /// A surface drawn from `seed` for `budget`'s layers over `epochs` epochs, scaled
    /// so that uniform pruning to the budget loses `uniform_drop` at the last epoch.
    pub fn new(budget: &Budget, epochs: usize, cfg: &SurfaceConfig, seed: u64) -> Surface {
        let p = families::draw(budget, cfg, seed);
        let mut s = Surface {
            epochs: epochs.max(1),
            channels: budget.layers.iter().map(|l| l.channels).collect(),
            sens: p.sens,
            phi: p.phi,
            power: p.power,
            pairs: p.pairs,
            cliffs: p.cliffs,
            cfg: SurfaceConfig { reward_samples: cfg.reward_samples.max(1), ..cfg.clone() },
        };
        let t = s.epochs - 1;
        let uniform = super::reward::uniform_kept(budget);
        let drop = s.loss(t, &uniform);
        let scale = if drop > 0.0 { cfg.uniform_drop / drop } else { 1.0 };
        s.sens.iter_mut().for_each(|v| *v *= scale);
        s.pairs.iter_mut().for_each(|p| p.w *= scale);
        s
    }

    pub fn config(&self) -> &SurfaceConfig {
        &self.cfg
    }

    /// Accuracy of the unpruned network at epoch t (0.32 rising to about 0.92).
    pub fn base(&self, t: usize) -> f64 {
        0.92 - 0.6 * (-(t as f64) / (0.15 * self.epochs as f64).max(1.0)).exp()
    }

    fn frac(&self, l: usize, k: usize) -> f64 {
        1.0 - k as f64 / self.channels[l] as f64
    }

    /// Loss of layer l kept at k channels at epoch t.
    fn layer_loss(&self, t: usize, l: usize, k: usize) -> f64 {
        let late = 1.0 - t as f64 / (self.epochs.max(2) - 1) as f64;
        let s = self.sens[l] * (1.0 + self.cfg.drift * self.phi[l] * late.max(0.0));
        let cliff = if k < self.cliffs[l] { self.cfg.cliff_drop } else { 0.0 };
        s * self.frac(l, k).powf(self.power[l]) + cliff
    }

    fn pair_loss(&self, p: Pair, ki: usize, kj: usize) -> f64 {
        p.w * self.frac(p.i, ki) * self.frac(p.j, kj)
    }

    /// Whether every pair joins two consecutive layers and no layer is in two
    /// pairs: then the optimum is a knapsack over layers and pairs (exact DP).
    fn chained(&self) -> bool {
        let mut used = vec![false; self.channels.len()];
        self.pairs.iter().all(|p| {
            let free = p.j == p.i + 1 && !used[p.i] && !used[p.j];
            used[p.i] = true;
            used[p.j] = true;
            free
        })
    }

    /// Noise-free accuracy of per-layer widths `kept` at epoch t, at least 0 (an
    /// architecture over several cliffs has collapsed; it cannot lose more than all).
    pub fn value(&self, t: usize, kept: &[usize]) -> f64 {
        (self.base(t) - self.loss(t, kept)).max(0.0)
    }

    /// Accuracy lost by per-layer widths `kept` at epoch t (not bounded by the base).
    fn loss(&self, t: usize, kept: &[usize]) -> f64 {
        let layers: f64 = kept.iter().enumerate().map(|(l, &k)| self.layer_loss(t, l, k)).sum();
        let pairs: f64 = self.pairs.iter().map(|&p| self.pair_loss(p, kept[p.i], kept[p.j])).sum();
        layers + pairs
    }

    /// Accuracy `v` as measured on `reward-samples` images with standard normal
    /// draw `z` (binomial noise, normal approximation, a multiple of 1/n like a
    /// real accuracy).
    fn measured(&self, v: f64, z: f64) -> f64 {
        let v = v.clamp(0.0, 1.0);
        let n = self.cfg.reward_samples as f64;
        let sd = (v.clamp(1e-3, 1.0 - 1e-3) * (1.0 - v.clamp(1e-3, 1.0 - 1e-3)) / n).sqrt();
        ((v + sd * z).clamp(0.0, 1.0) * n).round() / n
    }

    /// A reward with independent noise and no run effects.
    pub fn sample(&self, t: usize, kept: &[usize], rng: &mut Rng) -> f64 {
        self.measured(self.value(t, kept), rng.normal())
    }

    /// The rewards of one run on this surface, with the configured effects.
    pub fn run(&self, seed: u64) -> SurfaceRun<'_> {
        SurfaceRun { surface: self, seed, t: 0, offset: 0.0, target: None }
    }
}

/// One run's view of a surface: the epoch, its reward-subset offset and the
/// alignment target (see [`SurfaceConfig`]'s `noise` and `alignment-feedback`).
#[derive(Clone, Debug)]
pub struct SurfaceRun<'a> {
    surface: &'a Surface,
    seed: u64,
    t: usize,
    offset: f64,
    /// The alignment target and the epochs (this one included) it has been it.
    target: Option<(Vec<usize>, usize)>,
}

impl SurfaceRun<'_> {
    /// Starts epoch t (draws its reward-subset offset).
    pub fn begin_epoch(&mut self, t: usize) {
        self.t = t;
        let cfg = &self.surface.cfg;
        self.offset = match cfg.noise {
            Noise::Independent => 0.0,
            Noise::Correlated => {
                cfg.epoch_sd * Rng::new(mix64(self.seed ^ 0xe90c) ^ t as u64).normal()
            }
        };
    }

    /// The architecture the weights are aligned to in this epoch (call once per
    /// epoch, after [`SurfaceRun::begin_epoch`]).
    pub fn set_incumbent(&mut self, kept: &[usize]) {
        match &mut self.target {
            Some((k, n)) if k.as_slice() == kept => *n += 1,
            _ => self.target = Some((kept.to_vec(), 1)),
        }
    }

    /// The reward rise that alignment gives `kept` in this epoch.
    pub fn feedback(&self, kept: &[usize]) -> f64 {
        let cfg = &self.surface.cfg;
        let Some((target, n)) = self.target.as_ref().filter(|_| cfg.alignment_feedback) else {
            return 0.0;
        };
        let ch = &self.surface.channels;
        let d =
            kept.iter().zip(target).zip(ch).map(|((&a, &b), &c)| a.abs_diff(b) as f64 / c as f64);
        let d = d.sum::<f64>() / ch.len().max(1) as f64;
        cfg.feedback_gain
            * (1.0 - (-(*n as f64) / cfg.feedback_epochs).exp())
            * (-d / cfg.feedback_radius).exp()
    }

    /// The reward of `kept` in the current epoch (`rng`: independent noise only).
    pub fn reward(&self, kept: &[usize], rng: &mut Rng) -> f64 {
        let s = self.surface;
        let v = s.value(self.t, kept) + self.feedback(kept);
        match s.cfg.noise {
            Noise::Independent => s.measured(v, rng.normal()),
            Noise::Correlated => {
                let h = kept
                    .iter()
                    .fold(mix64(self.seed ^ 0xa7c4) ^ self.t as u64, |h, &k| mix64(h ^ k as u64));
                s.measured(v + self.offset, Rng::new(h).normal())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
