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

/// Agent settings (recipe `agent:` section).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AgentConfig {
    /// SAC hyper-parameters.
    #[serde(flatten)]
    pub sac: SacConfig,
    /// Size of z (GRU hidden state). Paper: not given; default 64.
    pub z_dim: i64,
    /// Environment-model learning rate (paper: 1e-3).
    pub env_lr: f64,
    /// Use the environment model (false = paper's "w/o EE": z = 0).
    pub env_model: bool,
    pub replay_capacity: usize,
    pub batch_size: usize,
    /// Gradient updates of the env model and of SAC per epoch of agent training.
    pub updates_per_epoch: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig { sac: SacConfig::default(), z_dim: 64, env_lr: 1e-3, env_model: true, replay_capacity: 100_000, batch_size: 64, updates_per_epoch: 100 }
    }
}

/// The agent: SAC + environment model + replay.
pub struct Agent {
    pub cfg: AgentConfig,
    pub sac: Sac,
    pub env: EnvModel,
    pub replay: Replay,
}

/// Losses of an epoch's updates.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct UpdateStats {
    pub env_loss: f64,
    pub critic_loss: f64,
    pub actor_loss: f64,
    pub entropy: f64,
}

fn stack(rows: &[&[f32]]) -> Tensor {
    let d = rows.first().map_or(0, |r| r.len()) as i64;
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, d])
}

impl Agent {
    pub fn new(cfg: AgentConfig, max_epochs: usize, seed: u64) -> Agent {
        let sac = Sac::new(STATE_DIM as i64, cfg.z_dim, cfg.sac.clone(), seed as i64);
        let env = EnvModel::new(STATE_DIM as i64, cfg.z_dim, max_epochs, cfg.env_lr, cfg.env_model, seed as i64 + 1);
        let replay = Replay::new(cfg.replay_capacity);
        Agent { cfg, sac, env, replay }
    }

    /// Runs one episode: `policy(l, state) -> action` for each layer, bounded by the budget.
    /// Returns (kept channels per layer, applied ratios, states).
    pub fn episode(&self, budget: &Budget, epoch: usize, rng: &mut Rng, explore: Explore) -> Episode {
        let z = self.env.z(epoch);
        let mut kept = Vec::new();
        let mut states = Vec::new();
        let mut actions = Vec::new();
        let mut prev = 0.0;
        for l in 0..budget.layers.len() {
            let s = budget.state(&kept, prev);
            let raw = match explore {
                Explore::Random => rng.uniform_f32(),
                Explore::Policy => self.sac.act(&s, &z, rng, false),
                Explore::Greedy => self.sac.act(&s, &z, rng, true),
            };
            let k = budget.apply(&kept, raw);
            let c = budget.layers[l].channels;
            let applied = 1.0 - k as f32 / c as f32;
            kept.push(k);
            states.push(s.to_vec());
            actions.push(applied);
            prev = applied;
        }
        let macs = budget.macs(&kept);
        Episode { kept, actions, states, epoch, macs, final_state: budget_final_state(budget, prev) }
    }

    /// Stores an episode's transitions with its reward.
    pub fn remember(&mut self, ep: &Episode, reward: f32) {
        let n = ep.states.len();
        for l in 0..n {
            let next = if l + 1 < n { ep.states[l + 1].clone() } else { ep.final_state.clone() };
            self.replay.push(Transition { state: ep.states[l].clone(), action: ep.actions[l], reward, next_state: next, done: l + 1 == n, epoch: ep.epoch });
        }
    }

    /// Environment-model and SAC updates from replay batches.
    pub fn update(&mut self, rng: &mut Rng) -> UpdateStats {
        let mut st = UpdateStats::default();
        if self.replay.len() < self.cfg.batch_size.min(self.replay.capacity) {
            return st;
        }
        let n = self.cfg.updates_per_epoch.max(1);
        for _ in 0..n {
            let batch = self.replay.sample(self.cfg.batch_size, rng);
            let s = stack(&batch.iter().map(|t| t.state.as_slice()).collect::<Vec<_>>());
            let s2 = stack(&batch.iter().map(|t| t.next_state.as_slice()).collect::<Vec<_>>());
            let a = Tensor::from_slice(&batch.iter().map(|t| t.action).collect::<Vec<_>>()).view([-1, 1]);
            let r = Tensor::from_slice(&batch.iter().map(|t| t.reward).collect::<Vec<_>>()).view([-1, 1]);
            let done = Tensor::from_slice(&batch.iter().map(|t| t.done as u8 as f32).collect::<Vec<_>>()).view([-1, 1]);
            let epochs: Vec<usize> = batch.iter().map(|t| t.epoch).collect();
            st.env_loss += self.env.train_step(&s, &a, &r, &epochs) / n as f64;
            let z = tch::no_grad(|| self.env.z_for(&epochs));
            let l = self.sac.update(&sac::Batch { s, a, r, s2, done, z }, rng);
            st.critic_loss += l.critic / n as f64;
            st.actor_loss += l.actor / n as f64;
            st.entropy += l.entropy / n as f64;
        }
        st
    }
}

impl Agent {
    /// Every learnable tensor of the agent (actor, critics, target critics,
    /// environment model) and its optimisers' moments, named for a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (p, vs) in [("actor", &self.sac.actor_vs), ("critic", &self.sac.critic_vs), ("target", &self.sac.target_vs), ("env", &self.env.vs)] {
            out.extend(nets::named_vars(vs).into_iter().map(|(n, t)| (format!("agent.{p}.{n}"), t)));
        }
        out.extend(self.sac.actor_opt.state("agent.opt.actor"));
        out.extend(self.sac.critic_opt.state("agent.opt.critic"));
        out.extend(self.env.opt.state("agent.opt.env"));
        out
    }

    /// Restores what [`Agent::tensors`] saved (the replay buffer is restored separately).
    pub fn load_tensors(&mut self, all: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
        for (p, vs) in [("actor", &self.sac.actor_vs), ("critic", &self.sac.critic_vs), ("target", &self.sac.target_vs), ("env", &self.env.vs)] {
            for (n, mut t) in nets::named_vars(vs) {
                let key = format!("agent.{p}.{n}");
                let src = all.get(&key).ok_or_else(|| format!("checkpoint lacks {key}"))?;
                if src.size() != t.size() {
                    return Err(format!("{key}: shape {:?} in the checkpoint, {:?} in the agent (another agent configuration?)", src.size(), t.size()));
                }
                tch::no_grad(|| t.copy_(src));
            }
        }
        self.sac.actor_opt.restore("agent.opt.actor", all)?;
        self.sac.critic_opt.restore("agent.opt.critic", all)?;
        self.env.opt.restore("agent.opt.env", all)
    }
}

/// The state after the last layer (terminal; only its position feature is set).
fn budget_final_state(_b: &Budget, prev: f32) -> Vec<f32> {
    let mut s = vec![0.0; STATE_DIM];
    s[0] = 1.0;
    s[STATE_DIM - 1] = prev;
    s
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

/// One pass of the agent over all layers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Episode {
    pub kept: Vec<usize>,
    /// Applied (bounded) pruning ratio per layer.
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

    #[test]
    fn sac_learns_a_bandit_optimum() {
        // One-step episodes: reward peaks at a = 0.3.
        let cfg = SacConfig { gamma: 0.0, alpha: 0.1, actor_lr: 1e-3, critic_lr: 1e-3, ..Default::default() };
        let mut sac = Sac::new(2, 1, cfg, 0);
        let mut rng = Rng::new(0);
        let z = Tensor::zeros([1, 1], (tch::Kind::Float, tch::Device::Cpu));
        let s = [0.5f32, 0.5];
        for _ in 0..400 {
            let acts: Vec<f32> = (0..32).map(|_| rng.uniform_f32()).collect();
            let rs: Vec<f32> = acts.iter().map(|a| 1.0 - 4.0 * (a - 0.3) * (a - 0.3)).collect();
            let b = sac::Batch {
                s: Tensor::from_slice(&s.repeat(32)).view([32, 2]),
                a: Tensor::from_slice(&acts).view([32, 1]),
                r: Tensor::from_slice(&rs).view([32, 1]),
                s2: Tensor::from_slice(&s.repeat(32)).view([32, 2]),
                done: Tensor::ones([32, 1], (tch::Kind::Float, tch::Device::Cpu)),
                z: Tensor::zeros([32, 1], (tch::Kind::Float, tch::Device::Cpu)),
            };
            sac.update(&b, &mut rng);
        }
        let a = sac.act(&s, &z, &mut rng, true);
        assert!((a - 0.3).abs() < 0.1, "greedy action {a}, optimum 0.3");
    }

    #[test]
    fn env_model_tracks_a_reward_that_drifts_with_epochs() {
        // The reward of the same (s, a) rises with the epoch; only z can explain it.
        let mut env = EnvModel::new(2, 16, 10, 3e-3, true, 0);
        let s = Tensor::from_slice(&[0.5f32, 0.5].repeat(10)).view([10, 2]);
        let a = Tensor::full([10, 1], 0.5, (tch::Kind::Float, tch::Device::Cpu));
        let epochs: Vec<usize> = (0..10).collect();
        let r = Tensor::from_slice(&epochs.iter().map(|&e| e as f32 / 10.0).collect::<Vec<_>>()).view([10, 1]);
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
        let (_, an) = crate::analysis::import(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx"), &Default::default()).unwrap();
        let b = Budget::new(an.cost, an.layers, 0.5, 0.9).unwrap();
        let mut a = Agent::new(AgentConfig { batch_size: 4, updates_per_epoch: 2, ..Default::default() }, 5, 1);
        let mut rng = Rng::new(3);
        for e in 0..3 {
            let ep = a.episode(&b, e, &mut rng, Explore::Random);
            a.remember(&ep, 0.5 + 0.1 * e as f32);
        }
        a.update(&mut rng);
        let saved: std::collections::HashMap<String, Tensor> = a.tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let mut b2 = Agent::new(AgentConfig { batch_size: 4, updates_per_epoch: 2, ..Default::default() }, 5, 99);
        b2.load_tensors(&saved).unwrap();
        b2.replay = a.replay.clone();
        let (mut r1, mut r2) = (Rng::new(7), Rng::new(7));
        let (e1, e2) = (a.episode(&b, 2, &mut r1, Explore::Policy), b2.episode(&b, 2, &mut r2, Explore::Policy));
        assert_eq!(e1.kept, e2.kept);
        let (s1, s2) = (a.update(&mut r1), b2.update(&mut r2));
        assert_eq!(s1.critic_loss, s2.critic_loss);
        assert_eq!(s1.env_loss, s2.env_loss);
    }
}
