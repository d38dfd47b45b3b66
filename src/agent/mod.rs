//! The RLAL agent (paper §3.2): per-layer states and bounded actions over the
//! analysis' prunable layers ([`budget`]), a soft actor-critic conditioned on
//! the environment representation ([`sac`]), the recurrent environment model
//! ([`env_model`]) and the replay buffer ([`replay`]). The agent never touches
//! the CNN: the search loop gives it rewards (accuracy of masked networks).
pub mod budget;
pub mod env_model;
pub mod nets;
pub mod replay;
pub mod sac;

pub use budget::{Budget, BudgetError, Curve, LatencyModel, Metric, STATE_DIM};
pub use env_model::EnvModel;
pub use replay::{Replay, Transition};
pub use sac::{Sac, SacConfig, SacLosses};

use crate::rng::Rng;
use tch::Tensor;

/// Agent settings: the recipe's `agent:` section, one struct with the defaults.
/// The fields marked "paper" reproduce the paper's agent exactly (the ablation
/// of docs/METHOD.md "What makes the agent learn"); the other defaults were
/// chosen by measurement (`rlal bench agent`, docs/BENCHMARKS.md).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AgentConfig {
    /// Actor Adam learning rate (paper 1e-4; default 3e-4, measured with `rlal bench agent`).
    pub actor_lr: f64,
    /// Critics' Adam learning rate (paper 1e-3).
    pub critic_lr: f64,
    /// Entropy coefficient α (paper 0.1), in units of the (normalised) reward: its
    /// value at the first agent epoch.
    pub alpha: f64,
    /// α at the last agent epoch, reached geometrically from `alpha` (AMC decays its
    /// exploration noise the same way): exploration early, exploitation of what the
    /// critics learned late. Default 0.01 (measured with `rlal bench agent`,
    /// docs/BENCHMARKS.md); `null` (the paper): α constant.
    pub alpha_final: Option<f64>,
    /// Discount γ over the layers of an episode (paper: not given; was 0.99). Every
    /// transition already carries the episode's reward, so γ = 0 is the Monte-Carlo
    /// return of the terminal-reward episode (default 0, measured).
    pub gamma: f64,
    /// Polyak coefficient τ of the target critics (0.005).
    pub tau: f64,
    /// Size of z, the GRU state (paper: not given; 64).
    pub z_dim: i64,
    /// Environment-model Adam learning rate (paper 1e-3).
    pub env_lr: f64,
    /// Use the environment model (false: paper's "w/o EE", z = 0).
    pub env_model: bool,
    /// Replay capacity in transitions (100000).
    pub replay_capacity: usize,
    /// Replay batch size (64).
    pub batch_size: usize,
    /// Env-model + SAC gradient updates per agent epoch (paper: not given; default 300,
    /// about one per transition of an epoch's 10 episodes over ~30 layers, SAC's usual
    /// ratio; 100 learned less in `rlal bench agent`).
    pub updates_per_epoch: usize,
    /// Run the agent updates of epoch t beside the weight training of epoch t+1
    /// (nothing in that training depends on them; the episodes of t+1 wait for them):
    /// `auto` (default: on CUDA, where the agent runs on otherwise idle CPU cores while
    /// the GPU trains), `always`, `never`. Results are those of the sequential order.
    pub overlap: Overlap,
    /// Reward the agent learns from: `raw` (paper: the accuracy) or `epoch` (default:
    /// the accuracy minus the mean of its epoch's episodes, over the pooled
    /// within-epoch standard deviation of the replay: the drift of the weights'
    /// accuracy is removed and α means the same at every accuracy level) or
    /// `incumbent` (the same with the incumbent's reward on the epoch's weights in
    /// place of the epoch's mean: an epoch of bad episodes stays bad).
    pub reward_norm: RewardNorm,
    /// Embedding ψ_t of a new epoch: `random` (paper: its initial value, never
    /// trained when the epoch's episodes act with z_t) or `previous` (default: a copy
    /// of ψ_{t-1} when epoch t's episodes start).
    pub embed_init: EmbedInit,
    /// How the actor's sample becomes a width: `clip` (paper: the ratio clipped to
    /// the bounds of Eq. 12-13, the clipped ratio stored) or `affine` (default: the
    /// sample mapped affinely into that layer's bounds, the sample itself stored, the
    /// bounds added to the state, so the executed action is the learned one).
    pub action_map: ActionMap,
    /// Which transitions of an episode carry its reward: `shared` (paper: every
    /// layer's), `terminal` (only the last layer's, the others 0: with γ = 1 the
    /// critics then learn the episode's value by bootstrapping through the layers) or
    /// `difference` (every layer's, less what the target critics credit to the
    /// episode's other layers: R − Σ_{m≠l} [Q̄(s_m, a_m) − Q̄(s_m, μ(s_m))], a
    /// difference reward, so a layer's critic target does not carry the spread of
    /// the other layers' choices; replay batches are then whole episodes).
    pub credit: Credit,
    /// How a layer is named in the state: `index` (paper Eq. 1: its position l/L
    /// only, so neighbouring layers with the same shapes look alike to the networks)
    /// or `one-hot` (default: also a one-hot code of the layer, so each layer can get
    /// its own action; measured with `rlal bench agent`).
    pub layer_code: LayerCode,
    /// The replay buffer's episodes (the buffer epochs, before the actor acts):
    /// `null` (paper: uniformly random actions) or σ > 0: each layer's action is the
    /// one that keeps the uniform architecture's width plus Gaussian noise of standard
    /// deviation σ (clamped to [0, 1]), so the first transitions the critics learn
    /// from lie around the baseline the search should beat, not all over the space.
    pub buffer_spread: Option<f64>,
    /// With `buffer-spread`: the share of the buffer episodes drawn around uniform, in
    /// [0, 1] (default 1: all; 0.5: every other one, the rest uniformly random).
    pub buffer_near_share: f64,
    /// In each agent epoch, the first episode is the actor's greedy one (the mean of
    /// its policy at every layer) instead of a sample: what the policy believes best
    /// is scored and can become the incumbent. Default false (paper: every episode
    /// sampled).
    pub greedy_episode: bool,
    /// `null` (paper: every layer's action of an agent episode is sampled from the
    /// policy) or p in (0, 1]: each layer samples with probability p and takes the
    /// policy's mean otherwise (at least one layer samples), so an episode is the
    /// policy's greedy architecture varied in a few layers: fewer episodes fall off a
    /// cliff the mean avoids, and a layer's reward is less mixed with the other
    /// layers' exploration. SAC learns off-policy, so its updates are unchanged.
    pub explore_layers: Option<f64>,
    /// Before the first agent episode, the actor's mean is fitted to the actions of
    /// the search's incumbent (behaviour cloning, [`Agent::warm_start`]; the
    /// uniform architecture where there is none), so the policy starts where the
    /// search stands instead of at its initial weights' arbitrary architecture
    /// (which on a surface with cliffs collapses). Default false (paper: the actor
    /// starts from its initialisation).
    pub actor_warm_start: bool,
    /// `null` (default: α follows `alpha` → `alpha-final`) or a target entropy per
    /// layer (nats of the action in [0, 1]; 0 = uniform, -1 ≈ a uniform spread over
    /// 0.37 of the range): α is learned from `alpha` so that the policy's entropy
    /// stays at the target (SAC with automatic temperature, Haarnoja et al. 2018b);
    /// `alpha-final` is then ignored.
    pub entropy_target: Option<f64>,
    /// Adam learning rate of log α with `entropy-target` (default 0.003: log α can
    /// move by about 0.003 per update, ~7 over 8 agent epochs of 300 updates).
    pub alpha_lr: f64,
}

/// See [`AgentConfig::layer_code`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum LayerCode {
    Index,
    OneHot,
}

/// See [`AgentConfig::credit`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Credit {
    Shared,
    Terminal,
    Difference,
}

/// See [`AgentConfig::overlap`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// On CUDA only (on the CPU the updates and the training would share the same cores).
    Auto,
    Always,
    Never,
}

impl Overlap {
    /// Whether the updates overlap the next epoch's training on `device`.
    pub fn resolve(self, device: tch::Device) -> bool {
        match self {
            Overlap::Auto => device.is_cuda(),
            Overlap::Always => true,
            Overlap::Never => false,
        }
    }
}

/// See [`AgentConfig::reward_norm`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum RewardNorm {
    Raw,
    Epoch,
    /// The accuracy minus the incumbent's on the same epoch's weights (re-scored there,
    /// `selection: rescore`; the epoch's mean where there is none yet), over the pooled
    /// within-epoch standard deviation: the drift is removed as by `epoch`, but an epoch
    /// whose episodes are all worse than the incumbent stays worse.
    Incumbent,
}

/// See [`AgentConfig::embed_init`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedInit {
    Random,
    Previous,
}

/// See [`AgentConfig::action_map`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ActionMap {
    /// The paper: floor(u·c) channels removed, clipped to the bounds.
    Clip,
    /// u mapped linearly onto the bounds (u = 0: the most channels they allow).
    Affine,
    /// u mapped piecewise linearly onto the bounds through the layer's fair share:
    /// u = 0.5 keeps the fraction that, kept by this and every later layer, meets the
    /// budget; u = 0 the most the bounds allow, u = 1 the fewest.
    Fair,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            actor_lr: 3e-4,
            critic_lr: 1e-3,
            alpha: 0.1,
            alpha_final: Some(0.01),
            gamma: 0.0,
            tau: 0.005,
            z_dim: 64,
            env_lr: 1e-3,
            env_model: true,
            replay_capacity: 100_000,
            batch_size: 64,
            updates_per_epoch: 300,
            overlap: Overlap::Auto,
            reward_norm: RewardNorm::Epoch,
            embed_init: EmbedInit::Previous,
            action_map: ActionMap::Affine,
            credit: Credit::Shared,
            layer_code: LayerCode::OneHot,
            buffer_spread: None,
            buffer_near_share: 1.0,
            greedy_episode: false,
            explore_layers: None,
            actor_warm_start: false,
            entropy_target: None,
            alpha_lr: 3e-3,
        }
    }
}

impl AgentConfig {
    /// The paper's agent as rlal ran it before `rlal bench agent` (actor lr 1e-4, 100
    /// updates per epoch, γ 0.99, raw rewards, fresh embeddings, clipped actions, a
    /// constant α, layers named by their index only).
    pub fn paper() -> AgentConfig {
        AgentConfig {
            actor_lr: 1e-4,
            updates_per_epoch: 100,
            gamma: 0.99,
            reward_norm: RewardNorm::Raw,
            embed_init: EmbedInit::Random,
            action_map: ActionMap::Clip,
            credit: Credit::Shared,
            alpha_final: None,
            layer_code: LayerCode::Index,
            ..Default::default()
        }
    }

    /// α at `progress` in [0, 1] through the agent epochs (`alpha-final`).
    pub fn alpha_at(&self, progress: f64) -> f64 {
        match self.alpha_final {
            Some(end) if self.alpha > 0.0 && end > 0.0 => {
                self.alpha * (end / self.alpha).powf(progress.clamp(0.0, 1.0))
            }
            Some(end) => self.alpha + (end - self.alpha) * progress.clamp(0.0, 1.0),
            None => self.alpha,
        }
    }

    /// The SAC part.
    pub fn sac(&self) -> SacConfig {
        SacConfig {
            actor_lr: self.actor_lr,
            critic_lr: self.critic_lr,
            alpha: self.alpha,
            gamma: self.gamma,
            tau: self.tau,
            entropy_target: self.entropy_target,
            alpha_lr: self.alpha_lr,
        }
    }

    /// State features the agent sees for a graph of `layers` prunable layers: Eq. 1,
    /// plus the layer's bounds with `affine`, its bounds and fair share with `fair`,
    /// and the one-hot layer code with `layer-code: one-hot`.
    pub fn state_dim(&self, layers: usize) -> usize {
        STATE_DIM
            + match self.action_map {
                ActionMap::Clip => 0,
                ActionMap::Affine => 2,
                ActionMap::Fair => 3,
            }
            + match self.layer_code {
                LayerCode::Index => 0,
                LayerCode::OneHot => layers,
            }
    }

    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let pos = |n: &'static str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err((n, format!("{v} must be > 0")))
            }
        };
        pos("actor-lr", self.actor_lr)?;
        pos("critic-lr", self.critic_lr)?;
        pos("env-lr", self.env_lr)?;
        pos("alpha-lr", self.alpha_lr)?;
        if let Some(v) = self.buffer_spread {
            pos("buffer-spread", v)?;
        }
        if let Some(v) = self.explore_layers.filter(|v| !(*v > 0.0 && *v <= 1.0)) {
            return Err(("explore-layers", format!("{v} must be in (0, 1]")));
        }
        if let Some(v) = self.entropy_target.filter(|v| !v.is_finite()) {
            return Err(("entropy-target", format!("{v} must be a finite number")));
        }
        if self.entropy_target.is_some() {
            pos("alpha", self.alpha)?;
        }
        if !(0.0..=1.0).contains(&self.buffer_near_share) {
            return Err((
                "buffer-near-share",
                format!("{} must be in [0, 1]", self.buffer_near_share),
            ));
        }
        for (n, v) in [("alpha", Some(self.alpha)), ("alpha-final", self.alpha_final)] {
            match v {
                Some(v) if !(v >= 0.0 && v.is_finite()) => {
                    return Err((n, format!("{v} must be >= 0")))
                }
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(("gamma", format!("{} must be in [0, 1]", self.gamma)));
        }
        if !(self.tau > 0.0 && self.tau <= 1.0) {
            return Err(("tau", format!("{} must be in (0, 1]", self.tau)));
        }
        for (n, v) in [
            ("batch-size", self.batch_size as i64),
            ("replay-capacity", self.replay_capacity as i64),
            ("z-dim", self.z_dim),
        ] {
            if v <= 0 {
                return Err((n, format!("{v} must be positive")));
            }
        }
        Ok(())
    }
}

/// The agent: SAC + environment model + replay.
pub struct Agent {
    pub cfg: AgentConfig,
    /// Prunable layers of the graph (the size of the one-hot layer code).
    pub layers: usize,
    pub sac: Sac,
    pub env: EnvModel,
    pub replay: Replay,
}

/// Losses of an epoch's updates.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct UpdateStats {
    /// Replay batches learned from: 0 while the replay holds fewer transitions than
    /// a batch (the losses are then meaningless).
    pub updates: usize,
    pub env_loss: f64,
    pub critic_loss: f64,
    pub actor_loss: f64,
    pub entropy: f64,
}

/// The first non-finite value of the agent's learning: the network concerned, what
/// became non-finite, and the recipe field that sets its step size.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("the agent's {network} diverged: its {what} became {value}; lower `{field}` in the recipe")]
pub struct Diverged {
    pub network: &'static str,
    pub what: &'static str,
    pub value: f64,
    pub field: &'static str,
}

/// Ok when `value` is finite; the [`Diverged`] naming `network`, `what` and `field` otherwise.
fn finite(
    network: &'static str,
    what: &'static str,
    value: f64,
    field: &'static str,
) -> Result<(), Diverged> {
    match value.is_finite() {
        true => Ok(()),
        false => Err(Diverged { network, what, value, field }),
    }
}

/// Ok when every variable of `vs` is finite (checked after an epoch's updates).
fn finite_vars(
    vs: &tch::nn::VarStore,
    network: &'static str,
    field: &'static str,
) -> Result<(), Diverged> {
    let bad = vs.variables().values().find(|t| !crate::train::all_finite(t)).is_some();
    match bad {
        false => Ok(()),
        true => Err(Diverged { network, what: "weights", value: f64::NAN, field }),
    }
}

fn stack(rows: &[&[f32]]) -> Tensor {
    let d = rows.first().map_or(0, |r| r.len()) as i64;
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, d])
}

impl Agent {
    /// An agent for a graph of `layers` prunable layers and a search of `max_epochs`.
    pub fn new(cfg: AgentConfig, layers: usize, max_epochs: usize, seed: u64) -> Agent {
        let dim = cfg.state_dim(layers) as i64;
        let sac = Sac::new(dim, cfg.z_dim, cfg.sac(), seed as i64);
        let env =
            EnvModel::new(dim, cfg.z_dim, max_epochs, cfg.env_lr, cfg.env_model, seed as i64 + 1);
        let replay = Replay::new(cfg.replay_capacity);
        Agent { cfg, layers, sac, env, replay }
    }

    /// The state of layer `kept.len()` as the agent sees it: Eq. 1, and with
    /// `affine`/`fair` the layer's bounds as pruning ratios (a_min, a_max of Eq.
    /// 12-13), with `fair` also the fair share's ratio.
    fn state(
        &self,
        budget: &Budget,
        kept: &[usize],
        prev: f32,
        (lo, hi): (usize, usize),
        fair: f64,
    ) -> Vec<f32> {
        let mut s = budget.state(kept, prev).to_vec();
        let c = budget.layers[kept.len()].channels as f32;
        match self.cfg.action_map {
            ActionMap::Clip => {}
            ActionMap::Affine => s.extend([1.0 - hi as f32 / c, 1.0 - lo as f32 / c]),
            ActionMap::Fair => {
                s.extend([1.0 - hi as f32 / c, 1.0 - lo as f32 / c, 1.0 - fair as f32 / c])
            }
        }
        if self.cfg.layer_code == LayerCode::OneHot {
            s.extend((0..self.layers).map(|j| (j == kept.len()) as u8 as f32));
        }
        s
    }

    /// Channels kept on layer `kept.len()` for the actor's sample `u` in [0, 1]
    /// ([`ActionMap`]); `fair`: the fair share in channels (only read by `fair`).
    pub fn width(
        &self,
        budget: &Budget,
        kept: &[usize],
        u: f32,
        (lo, hi): (usize, usize),
        fair: f64,
    ) -> usize {
        let u = u.clamp(0.0, 1.0) as f64;
        let k = match self.cfg.action_map {
            ActionMap::Clip => return budget.apply_within(kept, u as f32, (lo, hi)),
            ActionMap::Affine => hi - ((u * (hi - lo + 1) as f64).floor() as usize).min(hi - lo),
            ActionMap::Fair => {
                let f = fair.clamp(lo as f64, hi as f64);
                let x = if u <= 0.5 {
                    hi as f64 + (f - hi as f64) * 2.0 * u
                } else {
                    f + (lo as f64 - f) * (2.0 * u - 1.0)
                };
                (x.round() as usize).clamp(lo, hi)
            }
        };
        budget.aligned(k, budget.layers[kept.len()].channels, lo, hi)
    }

    /// The fair share of layer `kept.len()` in channels: the keep fraction x that,
    /// applied to it and every later layer (floor, within their minimum), meets the
    /// budget, times its width (bisection on x).
    pub fn fair_share(budget: &Budget, kept: &[usize]) -> f64 {
        let n = budget.layers.len();
        let widths = |x: f64| -> Vec<usize> {
            let mut v = kept.to_vec();
            v.extend((kept.len()..n).map(|j| {
                ((budget.layers[j].channels as f64 * x).floor() as usize)
                    .clamp(budget.min_keep[j], budget.layers[j].channels)
            }));
            v
        };
        let (mut a, mut b) = (0.0f64, 1.0f64);
        if budget.fits(&widths(1.0)) {
            a = 1.0;
        }
        for _ in 0..40 {
            if b - a < 1e-6 {
                break;
            }
            let m = 0.5 * (a + b);
            if budget.fits(&widths(m)) {
                a = m;
            } else {
                b = m;
            }
        }
        a * budget.layers[kept.len()].channels as f64
    }

    /// Runs one episode over all layers, each action bounded by the budget.
    pub fn episode(
        &self,
        budget: &Budget,
        epoch: usize,
        rng: &mut Rng,
        explore: Explore,
    ) -> Episode {
        let z = self.env.z(epoch);
        let sampled = match (explore, self.cfg.explore_layers) {
            (Explore::Policy, Some(p)) => Self::explored_layers(budget.layers.len(), p, rng),
            _ => vec![true; budget.layers.len()],
        };
        self.walk(budget, epoch, |s, at| match explore {
            Explore::Random => rng.uniform_f32(),
            Explore::Policy => self.sac.act(s, &z, rng, !sampled[at.kept.len()]),
            Explore::Greedy => self.sac.act(s, &z, rng, true),
        })
    }

    /// Which of `n` layers sample from the policy (`explore-layers: p`): each with
    /// probability p, one drawn at random when none is.
    fn explored_layers(n: usize, p: f64, rng: &mut Rng) -> Vec<bool> {
        let mut v: Vec<bool> = (0..n).map(|_| rng.bernoulli(p)).collect();
        if n > 0 && !v.contains(&true) {
            v[rng.below_usize(n)] = true;
        }
        v
    }

    /// The episode whose actions give the widths `target` (per layer, the nearest
    /// width the layer's bounds allow when `target`'s is not), as if the actor had
    /// sampled them: what the replay stores of an architecture the agent did not
    /// propose (`search.start: uniform`).
    pub fn episode_to(&self, budget: &Budget, epoch: usize, target: &[usize]) -> Episode {
        self.walk(budget, epoch, |_, at| self.action_for(budget, at, target[at.kept.len()]))
    }

    /// `actor-warm-start`: fits the actor's mean to the actions of the episode that
    /// keeps `kept` ([`Self::episode_to`]) at epoch `epoch`'s z (400 Adam steps at
    /// lr 1e-3); returns the final mean squared action distance.
    pub fn warm_start(&mut self, budget: &Budget, epoch: usize, kept: &[usize]) -> f64 {
        let e = self.episode_to(budget, epoch, kept);
        let rows: Vec<&[f32]> = e.states.iter().map(|s| s.as_slice()).collect();
        let target = Tensor::from_slice(&e.actions).view([-1, 1]);
        let z = self.env.z(epoch).detach();
        self.sac.imitate(&stack(&rows), &z, &target, 400, 1e-3)
    }

    /// An episode around the widths `target`: each layer's action is the one that
    /// keeps `target`'s width ([`Self::episode_to`]) plus N(0, σ²), clamped to [0, 1]
    /// (`buffer-spread`).
    pub fn episode_near(
        &self,
        budget: &Budget,
        epoch: usize,
        target: &[usize],
        spread: f64,
        rng: &mut Rng,
    ) -> Episode {
        self.walk(budget, epoch, |_, at| {
            let u = self.action_for(budget, at, target[at.kept.len()]) as f64;
            (u + spread * rng.normal()).clamp(0.0, 1.0) as f32
        })
    }

    /// One pass over the layers: `act` gives each layer's sample u from its state.
    fn walk(
        &self,
        budget: &Budget,
        epoch: usize,
        mut act: impl FnMut(&[f32], &Step) -> f32,
    ) -> Episode {
        let (mut kept, mut states, mut actions) = (Vec::new(), Vec::new(), Vec::new());
        let mut prev = 0.0;
        for l in 0..budget.layers.len() {
            let bounds = budget.keep_bounds(&kept);
            let fair = if self.cfg.action_map == ActionMap::Fair {
                Self::fair_share(budget, &kept)
            } else {
                0.0
            };
            let s = self.state(budget, &kept, prev, bounds, fair);
            let step = Step { kept: kept.clone(), bounds, fair };
            let u = act(&s, &step);
            let k = self.width(budget, &kept, u, bounds, fair);
            let applied = 1.0 - k as f32 / budget.layers[l].channels as f32;
            kept.push(k);
            states.push(s);
            // The replay holds what the actor's log-probability is about: the sample
            // itself (`affine`), or the applied ratio (`clip`, the paper).
            actions.push(if self.cfg.action_map == ActionMap::Clip { applied } else { u });
            prev = applied;
        }
        let macs = budget.macs(&kept);
        Episode { kept, actions, states, epoch, macs, final_state: self.final_state(prev) }
    }

    /// A sample u whose width at `at` is the nearest to `k` of those the bounds allow:
    /// the middle of the run of such samples on a grid of [0, 1].
    fn action_for(&self, budget: &Budget, at: &Step, k: usize) -> f32 {
        const GRID: usize = 1000;
        let u = |i: usize| i as f32 / GRID as f32;
        let width = |i: usize| self.width(budget, &at.kept, u(i), at.bounds, at.fair);
        let best = (0..=GRID).map(|i| width(i).abs_diff(k)).min().unwrap_or(0);
        let hits: Vec<usize> = (0..=GRID).filter(|&i| width(i).abs_diff(k) == best).collect();
        u(hits[hits.len() / 2])
    }

    /// The state after the last layer (terminal; only its position and a_{L} are set).
    fn final_state(&self, prev: f32) -> Vec<f32> {
        let mut s = vec![0.0; self.cfg.state_dim(self.layers)];
        s[0] = 1.0;
        s[STATE_DIM - 1] = prev;
        s
    }

    /// Called before epoch `t`'s episodes, `agent` the epochs `[first, end)` of the
    /// agent phase: with `embed-init: previous`, ψ_t starts as a copy of ψ_{t-1} (no
    /// transition of epoch t exists yet to train it); α follows `alpha-final`.
    pub fn begin_epoch(&mut self, t: usize, (first, end): (usize, usize)) {
        if self.cfg.embed_init == EmbedInit::Previous && t > 0 {
            self.env.inherit_embedding(t);
        }
        if self.cfg.entropy_target.is_none() {
            let span = end.saturating_sub(first + 1).max(1) as f64;
            self.sac.cfg.alpha = self.cfg.alpha_at(t.saturating_sub(first) as f64 / span);
        }
    }

    /// Stores an episode's transitions with its (raw) reward.
    pub fn remember(&mut self, ep: &Episode, reward: f32) {
        let n = ep.states.len();
        for l in 0..n {
            let next = if l + 1 < n { ep.states[l + 1].clone() } else { ep.final_state.clone() };
            self.replay.push(Transition {
                state: ep.states[l].clone(),
                action: ep.actions[l],
                reward,
                next_state: next,
                done: l + 1 == n,
                epoch: ep.epoch,
            });
        }
    }

    /// One replay batch: `batch-size` transitions drawn uniformly, or (`credit:
    /// difference`) whole episodes holding at least that many with, per transition,
    /// the index of its episode in the batch (empty for the other credit rules).
    fn draw_batch<'a>(
        replay: &'a Replay,
        cfg: &AgentConfig,
        rng: &mut Rng,
    ) -> (Vec<&'a Transition>, Vec<usize>) {
        match cfg.credit {
            Credit::Difference => replay.sample_episodes(cfg.batch_size, rng),
            Credit::Shared | Credit::Terminal => (replay.sample(cfg.batch_size, rng), Vec::new()),
        }
    }

    /// The critics' per-transition rewards of a batch under the credit rule
    /// ([`AgentConfig::credit`]); `rewards` are the (normalised) episode rewards and
    /// `(s, z, a)` the batch's states, environment states and actions.
    fn credited(
        &self,
        batch: &[&Transition],
        episode_of: &[usize],
        rewards: &[f32],
        (s, z, a): (&Tensor, &Tensor, &Tensor),
    ) -> Tensor {
        let per_row: Vec<f32> = match self.cfg.credit {
            Credit::Shared => rewards.to_vec(),
            Credit::Terminal => {
                batch.iter().zip(rewards).map(|(t, &x)| if t.done { x } else { 0.0 }).collect()
            }
            Credit::Difference => {
                let adv = Vec::<f32>::try_from(self.sac.advantage(s, z, a).view([-1]))
                    .expect("advantages are f32");
                let mut total = vec![0.0f32; episode_of.iter().max().map_or(0, |m| m + 1)];
                for (&e, &x) in episode_of.iter().zip(&adv) {
                    total[e] += x;
                }
                let rows = rewards.iter().zip(episode_of).zip(&adv);
                rows.map(|((&r, &e), &x)| r - (total[e] - x)).collect()
            }
        };
        Tensor::from_slice(&per_row).view([-1, 1])
    }

    /// Environment-model and SAC updates from replay batches; stops at the first
    /// non-finite reward, loss, temperature or weight ([`Diverged`]).
    pub fn update(&mut self, rng: &mut Rng) -> Result<UpdateStats, Diverged> {
        let mut st = UpdateStats::default();
        if self.replay.len() < self.cfg.batch_size.min(self.replay.capacity) {
            return Ok(st);
        }
        finite("temperature", "entropy coefficient α", self.sac.cfg.alpha, "agent.alpha")?;
        let norm = match self.cfg.reward_norm {
            RewardNorm::Epoch => Some(RewardScale::of(&self.replay, false)),
            RewardNorm::Incumbent => Some(RewardScale::of(&self.replay, true)),
            RewardNorm::Raw => None,
        };
        let n = self.cfg.updates_per_epoch.max(1);
        st.updates = n;
        for _ in 0..n {
            let (batch, episode_of) = Self::draw_batch(&self.replay, &self.cfg, rng);
            let s = stack(&batch.iter().map(|t| t.state.as_slice()).collect::<Vec<_>>());
            let s2 = stack(&batch.iter().map(|t| t.next_state.as_slice()).collect::<Vec<_>>());
            let a = Tensor::from_slice(&batch.iter().map(|t| t.action).collect::<Vec<_>>())
                .view([-1, 1]);
            let rewards: Vec<f32> = batch
                .iter()
                .map(|t| norm.as_ref().map_or(t.reward, |nm| nm.apply(t.reward, t.epoch)))
                .collect();
            if let Some(&bad) = rewards.iter().find(|r| !r.is_finite()) {
                // Rewards are measured on the jointly trained weights.
                finite("replay buffer", "episode reward", bad as f64, "training.lr")?;
            }
            let r = Tensor::from_slice(&rewards).view([-1, 1]);
            let done =
                Tensor::from_slice(&batch.iter().map(|t| t.done as u8 as f32).collect::<Vec<_>>())
                    .view([-1, 1]);
            let epochs: Vec<usize> = batch.iter().map(|t| t.epoch).collect();
            let env_loss = self.env.train_step(&s, &a, &r, &epochs);
            finite("environment model", "loss", env_loss, "agent.env-lr")?;
            let z = tch::no_grad(|| self.env.z_for(&epochs));
            // The environment model predicts the episode's reward at every layer; the
            // critics see it where the credit rule puts it.
            let r_sac = self.credited(&batch, &episode_of, &rewards, (&s, &z, &a));
            let l = self.sac.update(&sac::Batch { s, a, r: r_sac, s2, done, z }, rng);
            finite("critic", "loss", l.critic, "agent.critic-lr")?;
            finite("actor", "loss", l.actor, "agent.actor-lr")?;
            finite("actor", "policy entropy", l.entropy, "agent.actor-lr")?;
            st.env_loss += env_loss / n as f64;
            st.critic_loss += l.critic / n as f64;
            st.actor_loss += l.actor / n as f64;
            st.entropy += l.entropy / n as f64;
        }
        finite_vars(&self.sac.actor_vs, "actor", "agent.actor-lr")?;
        finite_vars(&self.sac.critic_vs, "critic", "agent.critic-lr")?;
        finite_vars(&self.env.vs, "environment model", "agent.env-lr")?;
        Ok(st)
    }
}

/// `reward-norm: epoch | incumbent`: each epoch's baseline (its mean episode reward,
/// or the incumbent's reward on its weights where the replay has it) and the pooled
/// within-epoch standard deviation, all from the replay buffer (so nothing beyond
/// the buffer needs checkpointing).
struct RewardScale {
    mean: std::collections::HashMap<usize, f64>,
    baseline: std::collections::HashMap<usize, f64>,
    std: f64,
}

impl RewardScale {
    fn of(replay: &Replay, incumbent: bool) -> RewardScale {
        let mut sums: std::collections::HashMap<usize, (f64, usize)> = Default::default();
        for t in &replay.items {
            let e = sums.entry(t.epoch).or_default();
            e.0 += t.reward as f64;
            e.1 += 1;
        }
        let mean: std::collections::HashMap<usize, f64> =
            sums.into_iter().map(|(e, (s, n))| (e, s / n as f64)).collect();
        let ss: f64 = replay.items.iter().map(|t| (t.reward as f64 - mean[&t.epoch]).powi(2)).sum();
        let std = (ss / replay.items.len().max(1) as f64).sqrt();
        let baseline = match incumbent {
            true => replay.baselines.iter().map(|(&e, &b)| (e, b as f64)).collect(),
            false => Default::default(),
        };
        RewardScale { mean, baseline, std: std.max(1e-4) }
    }

    fn apply(&self, r: f32, epoch: usize) -> f32 {
        let base = self.baseline.get(&epoch).unwrap_or(&self.mean[&epoch]);
        ((r as f64 - base) / self.std) as f32
    }
}

impl Agent {
    /// Every learnable tensor of the agent (actor, critics, target critics,
    /// environment model) and its optimisers' moments, named for a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (p, vs) in self.stores() {
            out.extend(
                nets::named_vars(vs).into_iter().map(|(n, t)| (format!("agent.{p}.{n}"), t)),
            );
        }
        out.extend(self.sac.actor_opt.state("agent.opt.actor"));
        out.extend(self.sac.critic_opt.state("agent.opt.critic"));
        out.extend(self.env.opt.state("agent.opt.env"));
        if self.cfg.entropy_target.is_some() {
            out.extend(self.sac.temperature_opt.state("agent.opt.temperature"));
        }
        out
    }

    /// The learnable variable stores by checkpoint prefix; log α only when it is
    /// learned (`entropy-target`), so checkpoints without it still restore.
    fn stores(&self) -> Vec<(&'static str, &tch::nn::VarStore)> {
        let mut v = vec![
            ("actor", &self.sac.actor_vs),
            ("critic", &self.sac.critic_vs),
            ("target", &self.sac.target_vs),
            ("env", &self.env.vs),
        ];
        if self.cfg.entropy_target.is_some() {
            v.push(("temperature", &self.sac.temperature_vs));
        }
        v
    }

    /// Restores what [`Agent::tensors`] saved (the replay buffer is restored separately).
    pub fn load_tensors(
        &mut self,
        all: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), nets::RestoreError> {
        for (p, vs) in self.stores() {
            for (n, mut t) in nets::named_vars(vs) {
                let key = format!("agent.{p}.{n}");
                let src = nets::stored(all, key.clone())?;
                if src.size() != t.size() {
                    let (found, want) = (src.size(), t.size());
                    return Err(nets::RestoreError::Shape { key, found, want });
                }
                tch::no_grad(|| t.copy_(src));
            }
        }
        self.sac.actor_opt.restore("agent.opt.actor", all)?;
        self.sac.critic_opt.restore("agent.opt.critic", all)?;
        if self.cfg.entropy_target.is_some() {
            self.sac.temperature_opt.restore("agent.opt.temperature", all)?;
            self.sac.sync_alpha();
        }
        self.env.opt.restore("agent.opt.env", all)
    }
}

/// How actions are chosen in an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Explore {
    /// Uniform random ratios (buffer warm-up, the `random` baseline).
    Random,
    /// Sampled from the policy.
    Policy,
    /// The policy's mean.
    Greedy,
}

/// Where an episode stands at a layer: the widths so far, the layer's bounds and fair share.
struct Step {
    kept: Vec<usize>,
    bounds: (usize, usize),
    fair: f64,
}

/// One pass of the agent over all layers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Episode {
    pub kept: Vec<usize>,
    /// What the replay stores per layer: the applied (bounded) pruning ratio
    /// (`clip`) or the actor's sample (`affine`).
    pub actions: Vec<f32>,
    #[serde(skip)]
    pub states: Vec<Vec<f32>>,
    pub epoch: usize,
    pub macs: u64,
    #[serde(skip)]
    pub final_state: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's tensors flattened, in checkpoint order.
    fn weights(a: &Agent) -> Vec<Vec<f32>> {
        let flat = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        a.tensors().iter().map(|(_, t)| flat(t)).collect()
    }

    #[test]
    fn agents_built_in_threads_at_once_get_their_seeds_weights() {
        // `rlal bench agent --jobs N` builds agents in parallel threads; libtorch's
        // generator is process-wide, so unguarded inits interleave their draws.
        let build = |seed: u64| weights(&Agent::new(AgentConfig::default(), 9, 8, seed));
        let alone: Vec<_> = (0..4u64).map(build).collect();
        for _ in 0..3 {
            let threads: Vec<_> = (0..4u64).map(|s| std::thread::spawn(move || build(s))).collect();
            for (s, h) in threads.into_iter().enumerate() {
                assert!(h.join().unwrap() == alone[s], "seed {s}: other weights in a thread");
            }
        }
    }

    #[test]
    fn sac_learns_a_bandit_optimum() {
        // One-step episodes: reward peaks at a = 0.3.
        let cfg = SacConfig {
            gamma: 0.0,
            alpha: 0.1,
            actor_lr: 1e-3,
            critic_lr: 1e-3,
            ..Default::default()
        };
        let mut sac = Sac::new(2, 1, cfg, 0);
        let mut rng = Rng::new(0);
        train_on_bandit(&mut sac, 400, &mut rng);
        let z = Tensor::zeros([1, 1], (tch::Kind::Float, tch::Device::Cpu));
        let a = sac.act(&BANDIT_STATE, &z, &mut rng, true);
        assert!((a - 0.3).abs() < 0.1, "greedy action {a}, optimum 0.3");
    }

    /// The one state of the bandit of [`train_on_bandit`].
    const BANDIT_STATE: [f32; 2] = [0.5, 0.5];

    /// `steps` updates of `sac` on one-step episodes whose reward peaks at a = 0.3,
    /// batches of 32 uniformly random actions.
    fn train_on_bandit(sac: &mut Sac, steps: usize, rng: &mut Rng) {
        let f = |v: f64| Tensor::full([32, 1], v, (tch::Kind::Float, tch::Device::Cpu));
        let states = || Tensor::from_slice(&BANDIT_STATE.repeat(32)).view([32, 2]);
        for _ in 0..steps {
            let acts: Vec<f32> = (0..32).map(|_| rng.uniform_f32()).collect();
            let rs: Vec<f32> = acts.iter().map(|a| 1.0 - 4.0 * (a - 0.3) * (a - 0.3)).collect();
            let b = sac::Batch {
                s: states(),
                a: Tensor::from_slice(&acts).view([32, 1]),
                r: Tensor::from_slice(&rs).view([32, 1]),
                s2: states(),
                done: f(1.0),
                z: f(0.0),
            };
            sac.update(&b, rng);
        }
    }

    /// α after 300 bandit updates of a SAC whose α is learned toward `target`.
    fn learned_alpha(target: f64) -> f64 {
        let cfg = SacConfig { gamma: 0.0, entropy_target: Some(target), ..Default::default() };
        let mut sac = Sac::new(2, 1, cfg, 0);
        train_on_bandit(&mut sac, 300, &mut Rng::new(0));
        sac.cfg.alpha
    }

    #[test]
    fn an_entropy_target_moves_alpha_toward_it() {
        // The untrained policy's entropy is about -0.2 nats: α falls to let it narrow to
        // -3 and rises to push it up toward 0 (the uniform policy).
        let (narrow, wide) = (learned_alpha(-3.0), learned_alpha(0.0));
        assert!(narrow < 0.1 * 0.7 && wide > 0.1 * 1.3, "α {narrow} (target -3), {wide} (0)");
        let zero = AgentConfig { entropy_target: Some(-1.0), alpha: 0.0, ..Default::default() };
        assert_eq!(zero.check().unwrap_err().0, "alpha");
        let nan = AgentConfig { entropy_target: Some(f64::NAN), ..Default::default() };
        assert_eq!(nan.check().unwrap_err().0, "entropy-target");
        // With a target, begin_epoch leaves the learned α alone.
        let cfg = AgentConfig { entropy_target: Some(-1.0), ..Default::default() };
        let mut a = Agent::new(cfg, 3, 20, 0);
        a.sac.cfg.alpha = 0.042;
        a.begin_epoch(14, (4, 15));
        assert_eq!(a.sac.cfg.alpha, 0.042);
    }

    /// Within one layer, the standard deviation of the critics' targets of a batch of
    /// whole episodes under `credit`, after the agent learned from random episodes
    /// (ResNet-20's 9 layers) with the additive reward Σ_l ±(u_l − 0.5).
    fn spread_of_credited_targets(credit: Credit) -> f64 {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet20_mnist.onnx");
        let (_, an) = crate::analysis::import(&path, &Default::default()).unwrap();
        let b = Budget::new(an.cost, an.layers, 0.5, 0.9).unwrap();
        let cfg = AgentConfig { credit, updates_per_epoch: 400, ..Default::default() };
        let mut a = Agent::new(cfg, b.layers.len(), 10, 0);
        let mut rng = Rng::new(4);
        for _ in 0..300 {
            let ep = a.episode(&b, 0, &mut rng, Explore::Random);
            let r = ep.actions.iter().enumerate().map(|(l, u)| (u - 0.5) * [1.0, -1.0][l % 2]);
            a.remember(&ep, 0.5 + r.sum::<f32>() / 9.0);
        }
        a.update(&mut rng).unwrap();
        let (batch, of) = a.replay.sample_episodes(900, &mut rng);
        let s = stack(&batch.iter().map(|t| t.state.as_slice()).collect::<Vec<_>>());
        let acts =
            Tensor::from_slice(&batch.iter().map(|t| t.action).collect::<Vec<_>>()).view([-1, 1]);
        let z = a.env.z_for(&batch.iter().map(|t| t.epoch).collect::<Vec<_>>());
        let norm = RewardScale::of(&a.replay, false);
        let rewards: Vec<f32> = batch.iter().map(|t| norm.apply(t.reward, t.epoch)).collect();
        let y = Vec::<f32>::try_from(a.credited(&batch, &of, &rewards, (&s, &z, &acts)).view([-1]))
            .unwrap();
        // The first layer's rows (its state shows no previous action).
        let first: Vec<f64> = y.iter().step_by(9).map(|&v| v as f64).collect();
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        (first.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / first.len() as f64).sqrt()
    }

    #[test]
    fn difference_credit_takes_the_other_layers_spread_out_of_a_layers_targets() {
        let (shared, difference) = (
            spread_of_credited_targets(Credit::Shared),
            spread_of_credited_targets(Credit::Difference),
        );
        // A layer's own part is a ninth of the reward's variance: a third of its spread
        // with exact critics; after 400 updates about 0.6 of it is left.
        assert!(
            difference < 0.75 * shared,
            "spread {difference} with difference credit, {shared} shared"
        );
    }

    /// The budget of graphs/mnist_cnn.onnx at 50% MACs.
    fn mnist_budget() -> Budget {
        let (_, an) = crate::analysis::import(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx"),
            &Default::default(),
        )
        .unwrap();
        Budget::new(an.cost, an.layers, 0.5, 0.9).unwrap()
    }

    #[test]
    fn buffer_episodes_around_a_target_stay_near_it_within_the_budget() {
        let b = mnist_budget();
        let a = Agent::new(AgentConfig::default(), b.layers.len(), 10, 0);
        let mut rng = Rng::new(3);
        let target = a.episode(&b, 0, &mut rng, Explore::Random).kept;
        let dist = |k: &[usize]| k.iter().zip(&target).map(|(x, y)| x.abs_diff(*y)).sum::<usize>();
        assert_eq!(a.episode_near(&b, 0, &target, 1e-9, &mut rng).kept, target);
        let (mut near, mut far) = (0, 0);
        for _ in 0..50 {
            let n = a.episode_near(&b, 0, &target, 0.05, &mut rng);
            assert!(b.fits(&n.kept), "{:?} over the budget", n.kept);
            near += dist(&n.kept);
            far += dist(&a.episode(&b, 0, &mut rng, Explore::Random).kept);
        }
        assert!(near > 0 && near * 3 < far, "around the target {near}, random {far}");
        let zero = AgentConfig { buffer_spread: Some(0.0), ..Default::default() };
        assert_eq!(zero.check().unwrap_err().0, "buffer-spread");
        let share = AgentConfig { buffer_near_share: 1.5, ..Default::default() };
        assert_eq!(share.check().unwrap_err().0, "buffer-near-share");
    }

    /// Per episode, how many layers' actions differ from the policy's mean at their state.
    fn layers_off_the_mean(a: &Agent, b: &Budget, episodes: usize) -> Vec<usize> {
        let (z, mut rng) = (a.env.z(0), Rng::new(5));
        let mut off = Vec::new();
        for _ in 0..episodes {
            let e = a.episode(b, 0, &mut rng, Explore::Policy);
            let mean = |s: &Vec<f32>| a.sac.act(s, &z, &mut Rng::new(0), true);
            off.push(e.states.iter().zip(&e.actions).filter(|(s, &u)| mean(s) != u).count());
        }
        off
    }

    #[test]
    fn explore_layers_samples_a_share_of_the_layers_and_keeps_the_mean_elsewhere() {
        let b = mnist_budget();
        let n = b.layers.len();
        let with = |p: Option<f64>| {
            let cfg = AgentConfig { explore_layers: p, ..Default::default() };
            Agent::new(cfg, n, 10, 0)
        };
        assert!(layers_off_the_mean(&with(None), &b, 20).iter().all(|&k| k == n));
        let off = layers_off_the_mean(&with(Some(0.3)), &b, 400);
        assert!(off.iter().all(|&k| k >= 1), "every episode explores a layer");
        let share = off.iter().sum::<usize>() as f64 / (400 * n) as f64;
        let expected = 0.3 + 0.7f64.powi(n as i32) / n as f64;
        assert!((share - expected).abs() < 0.05, "share {share}, expected {expected}");
        let bad = AgentConfig { explore_layers: Some(0.0), ..Default::default() };
        assert_eq!(bad.check().unwrap_err().0, "explore-layers");
    }

    #[test]
    fn a_warm_started_actor_proposes_the_architecture_it_was_fitted_to() {
        let b = mnist_budget();
        let cfg = AgentConfig { actor_warm_start: true, ..Default::default() };
        let mut a = Agent::new(cfg, b.layers.len(), 10, 0);
        let mut rng = Rng::new(11);
        for _ in 0..3 {
            let target = a.episode(&b, 2, &mut rng, Explore::Random).kept;
            assert_ne!(a.episode(&b, 2, &mut rng, Explore::Greedy).kept, target);
            let err = a.warm_start(&b, 2, &target);
            assert!(err < 1e-4, "mean squared action distance {err}");
            assert_eq!(a.episode(&b, 2, &mut rng, Explore::Greedy).kept, target);
        }
    }

    #[test]
    fn alpha_follows_its_schedule_through_the_agent_epochs() {
        let c = AgentConfig { alpha: 0.1, alpha_final: Some(0.001), ..Default::default() };
        assert!((c.alpha_at(0.0) - 0.1).abs() < 1e-12);
        assert!((c.alpha_at(0.5) - 0.01).abs() < 1e-12, "geometric midpoint");
        assert!((c.alpha_at(1.0) - 0.001).abs() < 1e-12);
        assert!((c.alpha_at(7.0) - 0.001).abs() < 1e-12, "clamped after the agent epochs");
        assert_eq!(AgentConfig::paper().alpha_at(0.7), AgentConfig::paper().alpha);
        let to_zero = AgentConfig { alpha: 0.1, alpha_final: Some(0.0), ..Default::default() };
        assert!((to_zero.alpha_at(0.5) - 0.05).abs() < 1e-12, "linear when an end is 0");
        // begin_epoch sets it from the epoch's place in [first, end).
        let mut a = Agent::new(c, 3, 20, 0);
        a.begin_epoch(14, (4, 15));
        assert!((a.sac.cfg.alpha - 0.001).abs() < 1e-9);
        a.begin_epoch(4, (4, 15));
        assert!((a.sac.cfg.alpha - 0.1).abs() < 1e-9);
        let bad = AgentConfig { alpha_final: Some(-1.0), ..Default::default() };
        assert_eq!(bad.check().unwrap_err().0, "alpha-final");
    }

    #[test]
    fn one_hot_layer_code_names_each_layer() {
        let b = mnist_budget();
        let n = b.layers.len();
        let cfg = AgentConfig { layer_code: LayerCode::OneHot, ..Default::default() };
        let index = AgentConfig { layer_code: LayerCode::Index, ..Default::default() };
        assert_eq!(cfg.state_dim(n), index.state_dim(n) + n);
        let a = Agent::new(cfg, n, 4, 0);
        let ep = a.episode(&b, 0, &mut Rng::new(1), Explore::Random);
        for (l, s) in ep.states.iter().enumerate() {
            assert_eq!(s.len(), a.cfg.state_dim(n));
            let code = &s[s.len() - n..];
            assert_eq!(code.iter().sum::<f32>(), 1.0);
            assert_eq!(code[l], 1.0, "layer {l}");
        }
        assert_eq!(ep.final_state.len(), a.cfg.state_dim(n));
    }

    /// A replay of one transition per (epoch, reward).
    fn replay_of(rewards: &[(usize, f32)]) -> Replay {
        let mut r = Replay::new(100);
        for &(epoch, reward) in rewards {
            let (state, next_state) = (vec![0.0], vec![0.0]);
            r.push(Transition { state, action: 0.5, reward, next_state, done: true, epoch });
        }
        r
    }

    #[test]
    fn incumbent_normalisation_keeps_an_epoch_of_bad_episodes_bad() {
        // Epoch 1: good episodes; epoch 2: all collapsed, its incumbent still good.
        let mut r = replay_of(&[(1, 0.80), (1, 0.70), (2, 0.02), (2, 0.01)]);
        let by_epoch = RewardScale::of(&r, false);
        assert!(by_epoch.apply(0.02, 2) > 0.0, "epoch means hide the collapse");
        r.baselines.insert(2, 0.75);
        let by_inc = RewardScale::of(&r, true);
        assert!(by_inc.apply(0.02, 2) < -5.0 && by_inc.apply(0.01, 2) < by_inc.apply(0.02, 2));
        // No incumbent for epoch 1 (the first search epoch): its mean, as with `epoch`.
        assert_eq!(by_inc.apply(0.80, 1), by_epoch.apply(0.80, 1));
        let json = serde_json::to_value(&r).unwrap();
        let back: Replay = serde_json::from_value(json).unwrap();
        assert_eq!(back.baselines, r.baselines, "checkpointed with the replay");
    }

    #[test]
    fn env_model_tracks_a_reward_that_drifts_with_epochs() {
        // The reward of the same (s, a) rises with the epoch; only z can explain it.
        let mut env = EnvModel::new(2, 16, 10, 3e-3, true, 0);
        let s = Tensor::from_slice(&[0.5f32, 0.5].repeat(10)).view([10, 2]);
        let a = Tensor::full([10, 1], 0.5, (tch::Kind::Float, tch::Device::Cpu));
        let epochs: Vec<usize> = (0..10).collect();
        let r = Tensor::from_slice(&epochs.iter().map(|&e| e as f32 / 10.0).collect::<Vec<_>>())
            .view([10, 1]);
        let first = env.train_step(&s, &a, &r, &epochs);
        let mut last = first;
        for _ in 0..300 {
            last = env.train_step(&s, &a, &r, &epochs);
        }
        assert!(last < first * 0.05 && last < 1e-3, "reconstruction loss {first} -> {last}");
        let mut off = EnvModel::new(2, 16, 10, 3e-3, false, 0);
        assert_eq!(off.train_step(&s, &a, &r, &epochs), 0.0);
        assert_eq!(off.z_for(&epochs).abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn agent_state_round_trips_through_tensors() {
        let b = mnist_budget();
        let fixed = AgentConfig { batch_size: 4, updates_per_epoch: 2, ..Default::default() };
        let learned = AgentConfig { entropy_target: Some(-1.0), ..fixed.clone() };
        for cfg in [fixed, learned] {
            let mut a = Agent::new(cfg.clone(), b.layers.len(), 5, 1);
            let mut rng = Rng::new(3);
            for e in 0..3 {
                let ep = a.episode(&b, e, &mut rng, Explore::Random);
                a.remember(&ep, 0.5 + 0.1 * e as f32);
            }
            a.update(&mut rng).unwrap();
            let saved: std::collections::HashMap<String, Tensor> =
                a.tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
            let temperature = saved.contains_key("agent.temperature.log_alpha");
            assert_eq!(temperature, cfg.entropy_target.is_some(), "log α saved when learned");
            let mut b2 = Agent::new(cfg, b.layers.len(), 5, 99);
            b2.load_tensors(&saved).unwrap();
            b2.replay = a.replay.clone();
            assert_eq!(a.sac.cfg.alpha, b2.sac.cfg.alpha);
            let (mut r1, mut r2) = (Rng::new(7), Rng::new(7));
            let (e1, e2) = (
                a.episode(&b, 2, &mut r1, Explore::Policy),
                b2.episode(&b, 2, &mut r2, Explore::Policy),
            );
            assert_eq!(e1.kept, e2.kept);
            let (s1, s2) = (a.update(&mut r1).unwrap(), b2.update(&mut r2).unwrap());
            assert_eq!(s1.critic_loss, s2.critic_loss);
            assert_eq!(s1.env_loss, s2.env_loss);
            assert_eq!(a.sac.cfg.alpha, b2.sac.cfg.alpha);
        }
    }
}
