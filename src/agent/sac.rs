//! Soft actor-critic (Haarnoja et al. 2018) conditioned on the environment
//! representation z (paper Eq. 6–9): a tanh-squashed Gaussian actor whose
//! action is a pruning ratio in [0, 1], two critics and their Polyak targets.
use super::nets::{mlp, polyak, Adam};
use crate::rng::Rng;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// SAC hyper-parameters (paper values as defaults).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SacConfig {
    pub actor_lr: f64,
    pub critic_lr: f64,
    /// Entropy coefficient α.
    pub alpha: f64,
    /// Discount γ over the layers of an episode.
    pub gamma: f64,
    /// Polyak coefficient τ for the target critics.
    pub tau: f64,
    /// With a target entropy per action, α is learned (log α by Adam at `alpha_lr`)
    /// so that the policy's entropy stays there; `None`: α is set from outside.
    #[serde(default)]
    pub entropy_target: Option<f64>,
    #[serde(default = "default_alpha_lr")]
    pub alpha_lr: f64,
}

fn default_alpha_lr() -> f64 {
    3e-3
}

impl Default for SacConfig {
    fn default() -> Self {
        SacConfig {
            actor_lr: 1e-4,
            critic_lr: 1e-3,
            alpha: 0.1,
            gamma: 0.99,
            tau: 0.005,
            entropy_target: None,
            alpha_lr: default_alpha_lr(),
        }
    }
}

/// A batch of transitions as tensors; `z`/`z_next` already computed.
pub struct Batch {
    pub s: Tensor,
    pub a: Tensor,
    pub r: Tensor,
    pub s2: Tensor,
    pub done: Tensor,
    pub z: Tensor,
}

/// Losses of one update, for the metrics.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SacLosses {
    pub critic: f64,
    pub actor: f64,
    pub entropy: f64,
}

pub struct Sac {
    pub cfg: SacConfig,
    pub actor_vs: nn::VarStore,
    actor: nn::Sequential,
    pub critic_vs: nn::VarStore,
    q1: nn::Sequential,
    q2: nn::Sequential,
    pub target_vs: nn::VarStore,
    q1t: nn::Sequential,
    q2t: nn::Sequential,
    pub actor_opt: Adam,
    pub critic_opt: Adam,
    /// log α, learned with `entropy_target` (else unused), and its optimiser.
    pub temperature_vs: nn::VarStore,
    log_alpha: Tensor,
    pub temperature_opt: Adam,
}

const LOG_2PI_HALF: f64 = 0.918_938_533_204_672_7;

impl Sac {
    pub fn new(state_dim: i64, z_dim: i64, cfg: SacConfig, seed: i64) -> Sac {
        let _generator = super::nets::seeded(seed);
        let actor_vs = nn::VarStore::new(Device::Cpu);
        let actor = mlp(actor_vs.root() / "actor", state_dim + z_dim, 2);
        let critic_vs = nn::VarStore::new(Device::Cpu);
        let q1 = mlp(critic_vs.root() / "q1", state_dim + z_dim + 1, 1);
        let q2 = mlp(critic_vs.root() / "q2", state_dim + z_dim + 1, 1);
        let mut target_vs = nn::VarStore::new(Device::Cpu);
        let q1t = mlp(target_vs.root() / "q1", state_dim + z_dim + 1, 1);
        let q2t = mlp(target_vs.root() / "q2", state_dim + z_dim + 1, 1);
        target_vs.copy(&critic_vs).expect("same architecture");
        target_vs.freeze();
        let actor_opt = Adam::new(&actor_vs, cfg.actor_lr, (0.9, 0.999));
        let critic_opt = Adam::new(&critic_vs, cfg.critic_lr, (0.9, 0.999));
        let temperature_vs = nn::VarStore::new(Device::Cpu);
        let init = nn::Init::Const(cfg.alpha.max(f64::MIN_POSITIVE).ln());
        let log_alpha = temperature_vs.root().var("log_alpha", &[1], init);
        let temperature_opt = Adam::new(&temperature_vs, cfg.alpha_lr, (0.9, 0.999));
        Sac {
            cfg,
            actor_vs,
            actor,
            critic_vs,
            q1,
            q2,
            target_vs,
            q1t,
            q2t,
            actor_opt,
            critic_opt,
            temperature_vs,
            log_alpha,
            temperature_opt,
        }
    }

    /// α from the learned log α (after a restore; `entropy_target` only).
    pub fn sync_alpha(&mut self) {
        if self.cfg.entropy_target.is_some() {
            self.cfg.alpha = self.log_alpha.double_value(&[0]).exp();
        }
    }

    /// Mean and log-std of the pre-squash Gaussian.
    fn dist(&self, s: &Tensor, z: &Tensor) -> (Tensor, Tensor) {
        let out = self.actor.forward(&Tensor::cat(&[s, z], 1));
        let mean = out.narrow(1, 0, 1);
        let log_std = out.narrow(1, 1, 1).clamp(-20.0, 2.0);
        (mean, log_std)
    }

    /// Reparameterised sample with noise `eps`: (action in [0,1], log-prob).
    fn sample(&self, s: &Tensor, z: &Tensor, eps: &Tensor) -> (Tensor, Tensor) {
        let (mean, log_std) = self.dist(s, z);
        let u = &mean + log_std.exp() * eps;
        let t = u.tanh();
        // log N(u) − log(1 − tanh²u) + log 2  (a = (tanh u + 1) / 2)
        let squash: Tensor = (&t * &t).neg() + (1.0 + 1e-6);
        let logp =
            (eps * eps) * -0.5 - &log_std - LOG_2PI_HALF - squash.log() + std::f64::consts::LN_2;
        ((t + 1.0) * 0.5, logp)
    }

    fn noise(rng: &mut Rng, n: i64) -> Tensor {
        let v: Vec<f32> = (0..n).map(|_| rng.normal_f32()).collect();
        Tensor::from_slice(&v).view([n, 1])
    }

    /// Action for one state: sampled (exploration) or the squashed mean.
    pub fn act(&self, state: &[f32], z: &Tensor, rng: &mut Rng, deterministic: bool) -> f32 {
        tch::no_grad(|| {
            let s = Tensor::from_slice(state).view([1, -1]);
            if deterministic {
                let (mean, _) = self.dist(&s, z);
                ((mean.tanh() + 1.0) * 0.5).double_value(&[0, 0]) as f32
            } else {
                let (a, _) = self.sample(&s, z, &Self::noise(rng, 1));
                a.double_value(&[0, 0]) as f32
            }
        })
    }

    /// Behaviour cloning of the policy's mean: `steps` Adam steps (a fresh optimiser at
    /// `lr`, the actor's own moments untouched) on the squared distance between the
    /// squashed mean and `target` (n × 1) at the states `s` (n × state) under `z`
    /// (1 × z); the log-std is left as it is. Returns the final mean squared distance.
    pub fn imitate(
        &mut self,
        s: &Tensor,
        z: &Tensor,
        target: &Tensor,
        steps: usize,
        lr: f64,
    ) -> f64 {
        let z = z.expand([s.size()[0], -1], true);
        let mut opt = Adam::new(&self.actor_vs, lr, (0.9, 0.999));
        let loss = |sac: &Sac| {
            let mean = (sac.dist(s, &z).0.tanh() + 1.0) * 0.5;
            mean.mse_loss(target, tch::Reduction::Mean)
        };
        for _ in 0..steps {
            opt.minimize(&loss(self));
        }
        tch::no_grad(|| loss(self).double_value(&[]))
    }

    /// Per row, how much better the target critics value the taken action than the
    /// policy's mean: min Q̄(s, a) − min Q̄(s, μ(s)), without gradients
    /// (`credit: difference`).
    pub fn advantage(&self, s: &Tensor, z: &Tensor, a: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let mu = (self.dist(s, z).0.tanh() + 1.0) * 0.5;
            let q =
                |a: &Tensor| Self::q(&self.q1t, s, z, a).min_other(&Self::q(&self.q2t, s, z, a));
            q(a) - q(&mu)
        })
    }

    fn q(net: &nn::Sequential, s: &Tensor, z: &Tensor, a: &Tensor) -> Tensor {
        net.forward(&Tensor::cat(&[s, z, a], 1))
    }

    /// One critic + actor update (Eq. 7–9) and a Polyak step of the targets.
    pub fn update(&mut self, b: &Batch, rng: &mut Rng) -> SacLosses {
        let n = b.s.size()[0];
        let alpha = self.cfg.alpha;
        let y = tch::no_grad(|| {
            let (a2, logp2) = self.sample(&b.s2, &b.z, &Self::noise(rng, n));
            let qt = Self::q(&self.q1t, &b.s2, &b.z, &a2)
                .min_other(&Self::q(&self.q2t, &b.s2, &b.z, &a2))
                - logp2 * alpha;
            &b.r + (1.0 - &b.done) * self.cfg.gamma * qt
        });
        let critic_loss = Self::q(&self.q1, &b.s, &b.z, &b.a).mse_loss(&y, tch::Reduction::Mean)
            + Self::q(&self.q2, &b.s, &b.z, &b.a).mse_loss(&y, tch::Reduction::Mean);
        self.critic_opt.minimize(&critic_loss);
        let (a, logp) = self.sample(&b.s, &b.z, &Self::noise(rng, n));
        let q = Self::q(&self.q1, &b.s, &b.z, &a).min_other(&Self::q(&self.q2, &b.s, &b.z, &a));
        let actor_loss = (&logp * alpha - q).mean(Kind::Float);
        self.actor_opt.minimize(&actor_loss);
        if let Some(target) = self.cfg.entropy_target {
            // J(α) = E[−α (log π + H̄)]: α rises while the entropy is below the target.
            let gap = (logp.detach() + target).mean(Kind::Float);
            self.temperature_opt.minimize(&(&self.log_alpha * gap).neg().sum(Kind::Float));
            self.sync_alpha();
        }
        polyak(&self.target_vs, &self.critic_vs, self.cfg.tau);
        SacLosses {
            critic: critic_loss.double_value(&[]),
            actor: actor_loss.double_value(&[]),
            entropy: -logp.mean(Kind::Float).double_value(&[]),
        }
    }
}
