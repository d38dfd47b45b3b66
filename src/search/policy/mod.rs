//! Search policies: what proposes each search epoch's architectures (per-layer
//! kept widths) and learns from their rewards. `rlal prune` (the job's epochs) and
//! `rlal bench agent` drive every policy through [`SearchPolicy`]; the job keeps
//! the rest the same for all of them: the episode count, the budget's bounds, the
//! reward, the selection rule ([`crate::search::best`]), the alignment to the
//! incumbent and the checkpoints.
//!
//! * [`rlal`]: the RLAL agent (SAC + environment model, paper Alg. 1);
//! * [`random`]: random search, the agent's uniformly random bounded episodes;
//! * [`evolution`]: regularised evolution (Real et al., AAAI 2019);
//! * [`local`]: (1+λ) hill climbing around the incumbent;
//! * [`uniform`], [`l1_global`]: baselines without search, one architecture per epoch.
//!
//! Adding a policy: a file here with a type implementing [`SearchPolicy`], its name
//! in [`Policy`] and in [`build`].
pub mod evolution;
pub mod l1_global;
pub mod local;
pub mod mutate;
pub mod random;
pub mod rlal;
pub mod uniform;

use super::best::{Best, Selection};
use super::recipe::{Phase, Policy, Recipe};
use crate::agent::{Budget, Diverged, UpdateStats};
use crate::rng::Rng;
use crate::train::{Net, TrainError};
use std::collections::HashMap;
use tch::Tensor;

/// What a policy sees of the job when it proposes an epoch's architectures.
pub struct Ctx<'a> {
    pub budget: &'a Budget,
    /// The network on its current weights (`None` in `rlal bench agent`).
    pub net: Option<&'a Net>,
    /// The search's random stream ([`crate::rng::Stream::Search`], checkpointed).
    pub rng: &'a mut Rng,
    /// The best architecture the selection rule keeps so far.
    pub incumbent: Option<&'a Best>,
    /// The epoch's phase ([`Recipe::phase`]).
    pub phase: Phase,
    /// Architectures a searching epoch scores (`search.episodes-per-epoch`).
    pub episodes: usize,
}

/// What a policy's learning step reports for the epoch's metrics row.
#[derive(Clone, Copy, Debug)]
pub struct Learned {
    pub stats: UpdateStats,
    /// SAC's entropy coefficient α of the epoch.
    pub alpha: f64,
    /// Whether the environment-model loss is meaningful (`agent.env-model`).
    pub env_model: bool,
}

/// A search policy (see the module documentation). The job calls, per search epoch
/// `t`: [`propose`](Self::propose), scores the architectures on the epoch's frozen
/// weights, [`observe`](Self::observe)s the rewards, and when the policy
/// [`learns`](Self::learns) in that phase, [`update`](Self::update)s it (possibly
/// beside the next epoch's weight training). Its state is checkpointed after every
/// epoch ([`tensors`](Self::tensors), [`state`](Self::state)) and
/// [`restore`](Self::restore)d on `--resume`, so a resumed run is the same run.
pub trait SearchPolicy: Send {
    /// The recipe's name (`policy:`).
    fn name(&self) -> &'static str;

    /// True (searches): the selection rule keeps the best architectures seen. False
    /// (baselines without search): the incumbent follows the policy's latest choice,
    /// and a run without search epochs prunes to its choice on the final weights.
    fn keeps_best(&self) -> bool {
        true
    }

    /// The architectures of epoch `t` (0-based), each within the budget.
    fn propose(&mut self, t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError>;

    /// The rewards of the architectures [`propose`](Self::propose) returned, in order.
    fn observe(&mut self, _t: usize, _kept: &[Vec<usize>], _rewards: &[f64]) {}

    /// Whether the policy learns after its episodes in `phase` (the agent updates).
    fn learns(&self, _phase: Phase) -> bool {
        false
    }

    /// One epoch's learning (only called where [`learns`](Self::learns)); stops at the
    /// first non-finite value ([`Diverged`]).
    fn update(&mut self, _rng: &mut Rng) -> Result<Option<Learned>, Diverged> {
        Ok(None)
    }

    /// The architecture the policy would choose now without exploring (the agent's
    /// greedy policy), for `rlal bench agent`'s statistics.
    fn greedy(&self, _budget: &Budget, _t: usize) -> Option<Vec<usize>> {
        None
    }

    /// Tensors of the checkpoint (names unique to the policy).
    fn tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The rest of the policy's state, for `search.json`.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores what [`tensors`](Self::tensors) and [`state`](Self::state) saved.
    fn restore(
        &mut self,
        _state: &serde_json::Value,
        _tensors: &HashMap<String, Tensor>,
    ) -> Result<(), PolicyStateError> {
        Ok(())
    }
}

/// Where a search starts (`search.start-from`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// Every episode of the first search epoch is the policy's own (random ones; the
    /// default before 2026-12-07).
    Random,
    /// The first search epoch's first episode is the uniform architecture
    /// ([`crate::search::reward::uniform_kept`]), the rest the policy's own: the
    /// search begins from the baseline it should beat, at no extra evaluation
    /// (default since 2026-12-07, chosen on dev seed 0 of `rlal bench agent --suite
    /// short`: docs/BENCHMARKS.md).
    #[default]
    Uniform,
}

/// An epoch's `ctx.episodes` proposals: with `start: uniform` and no incumbent yet
/// (the first search epoch), the uniform architecture (made by `from`) first, then
/// the policy's own (`draw`).
pub(crate) fn with_start<T>(
    start: StartFrom,
    ctx: &mut Ctx,
    from: impl FnOnce(&[usize]) -> T,
    mut draw: impl FnMut(&mut Ctx) -> T,
) -> Vec<T> {
    let first = (start == StartFrom::Uniform && ctx.incumbent.is_none())
        .then(|| from(&crate::search::reward::uniform_kept(ctx.budget)));
    let n = ctx.episodes;
    first.into_iter().chain(std::iter::from_fn(|| Some(draw(ctx)))).take(n).collect()
}

/// The policy `r.policy` for a graph of `layers` prunable layers (`seed`: of the
/// agent's networks, the run's `training.seed`).
pub fn build(r: &Recipe, layers: usize, seed: u64) -> Box<dyn SearchPolicy> {
    let sampler = || random::Sampler::new(r, layers, seed);
    match r.policy {
        Policy::Rlal => Box::new(rlal::Rlal::new(r, layers, seed)),
        Policy::Random => Box::new(random::Random { sampler: sampler() }),
        Policy::Evolution => {
            let relative = r.search.selection == Selection::Rescore;
            Box::new(evolution::Evolution::new(r.evolution.clone(), sampler(), relative))
        }
        Policy::Local => Box::new(local::Local::new(r.local.clone(), sampler())),
        Policy::Uniform => Box::new(uniform::Uniform),
        Policy::L1Global => Box::new(l1_global::L1Global { p: r.search.criterion.p() }),
    }
}

/// Ok when every `(field, value)` is at least 1, else the first field that is not.
pub(crate) fn at_least_one(fields: &[(&'static str, usize)]) -> Result<(), (&'static str, String)> {
    match fields.iter().find(|f| f.1 == 0) {
        Some(&(f, _)) => Err((f, "must be at least 1".into())),
        None => Ok(()),
    }
}

/// Why a checkpoint cannot restore a policy ([`SearchPolicy::restore`]); the job adds
/// the checkpoint's file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStateError {
    /// The policy's part of `search.json` does not parse.
    #[error("the {policy} policy's state in the checkpoint: {error}")]
    State { policy: &'static str, error: serde_json::Error },
    /// The checkpoint's tensors do not fit the policy's networks.
    #[error(transparent)]
    Tensors(#[from] crate::agent::nets::RestoreError),
}

/// A policy's state from `search.json`, or an error naming what is wrong with it.
pub(crate) fn from_state<T: serde::de::DeserializeOwned>(
    policy: &'static str,
    v: &serde_json::Value,
) -> Result<T, PolicyStateError> {
    serde_json::from_value(v.clone()).map_err(|error| PolicyStateError::State { policy, error })
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::{Ctx, SearchPolicy};
    use crate::agent::Budget;
    use crate::rng::Rng;
    use crate::search::best::{Best, Incumbents};
    use crate::search::recipe::Phase;
    use crate::search::surface::{Surface, SurfaceConfig};

    /// The default recipe's sampler for `layers` layers, its searches started at random
    /// (the tests of the moves draw their parents from it).
    pub fn random_sampler(layers: usize) -> super::random::Sampler {
        let mut r = crate::search::recipe::Recipe::default();
        r.search.start_from = super::StartFrom::Random;
        super::random::Sampler::new(&r, layers, 0)
    }

    /// ResNet-20's budget (9 layers) at `ratio` of the MACs, widths in multiples of `m`.
    pub fn budget(ratio: f64, m: usize) -> Budget {
        crate::search::surface::tests::budget("resnet20_mnist.onnx", ratio, m)
    }

    /// Whether `kept` is an architecture the agent could produce: allowed widths within the budget.
    pub fn in_bounds(budget: &Budget, kept: &[usize]) -> bool {
        let allowed = kept.iter().enumerate().all(|(l, &k)| budget.allowed(l).any(|w| w == k));
        allowed && budget.fits(kept)
    }

    /// Whether `kept` uses up the budget: no layer can widen one allowed step and still fit.
    pub fn uses_budget(budget: &Budget, kept: &[usize]) -> bool {
        (0..kept.len()).all(|l| {
            let mut k = kept.to_vec();
            k[l] = budget.next_allowed(l, k[l]);
            k[l] == kept[l] || !budget.fits(&k)
        })
    }

    /// What [`search`] saw: the incumbent's value after every epoch, every proposal.
    pub struct Searched {
        pub incumbent: Vec<f64>,
        pub proposed: Vec<Vec<usize>>,
    }

    /// `policy` for `epochs` search epochs of `episodes` architectures on a fixed,
    /// noise-free surface (seed `seed`; rewards are its values), the incumbents kept as
    /// `rlal prune` keeps them (`selection: rescore`, 3 of them).
    pub fn search(
        policy: &mut dyn SearchPolicy,
        b: &Budget,
        epochs: usize,
        episodes: usize,
        seed: u64,
    ) -> Searched {
        let s = Surface::new(b, 2, &SurfaceConfig::default(), seed);
        let (mut rng, mut inc) = (Rng::new(seed), Incumbents::default());
        let mut out = Searched { incumbent: Vec::new(), proposed: Vec::new() };
        for t in 0..epochs {
            let _ = inc.rescore(t + 1, |k| Ok::<_, ()>(s.value(1, k)));
            let incumbent = inc.best();
            let phase = Phase::Baseline;
            let mut ctx = Ctx { budget: b, net: None, rng: &mut rng, incumbent, phase, episodes };
            let kept = policy.propose(t, &mut ctx).unwrap();
            let rewards: Vec<f64> = kept.iter().map(|k| s.value(1, k)).collect();
            policy.observe(t, &kept, &rewards);
            for (k, &reward) in kept.iter().zip(&rewards) {
                inc.offer(Best { reward, kept: k.clone(), epoch: t + 1 }, 3, true);
            }
            out.incumbent.push(inc.best().unwrap().reward);
            out.proposed.extend(kept);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{budget, in_bounds};
    use super::*;
    use crate::agent::ActionMap;
    use crate::search::reward::uniform_kept;

    /// The first two epochs' proposals of policy `name` started from `from`, the second
    /// with an incumbent.
    fn first_epochs(
        name: Policy,
        from: StartFrom,
        map: ActionMap,
        b: &Budget,
    ) -> [Vec<Vec<usize>>; 2] {
        let mut r = Recipe { policy: name, ..Recipe::default() };
        (r.search.start_from, r.agent.action_map) = (from, map);
        let mut p = build(&r, b.layers.len(), 0);
        let mut rng = Rng::new(5);
        let mut epoch = |t: usize, incumbent: Option<&Best>| {
            let (phase, episodes) = (r.phase(t + r.search.weights_only_epochs), 4);
            let mut ctx = Ctx { budget: b, net: None, rng: &mut rng, incumbent, phase, episodes };
            let kept = p.propose(t, &mut ctx).unwrap();
            p.observe(t, &kept, &vec![0.5; kept.len()]);
            kept
        };
        let first = epoch(0, None);
        let best = Best { reward: 0.5, kept: first[1].clone(), epoch: 1 };
        [first, epoch(1, Some(&best))]
    }

    #[test]
    fn a_search_started_from_uniform_scores_it_first_at_no_extra_episode() {
        for map in [ActionMap::Affine, ActionMap::Clip, ActionMap::Fair] {
            let b = budget(0.45, 4);
            let u = uniform_kept(&b);
            for policy in [Policy::Rlal, Policy::Random, Policy::Evolution, Policy::Local] {
                let [first, second] = first_epochs(policy, StartFrom::Uniform, map, &b);
                assert_eq!(first.len(), 4, "{policy:?}");
                assert_eq!(first[0], u, "{policy:?} {map:?}: the uniform architecture first");
                assert!(first.iter().chain(&second).all(|k| in_bounds(&b, k)), "{policy:?}");
                assert!(second.iter().all(|k| *k != u), "{policy:?}: only once");
                let [plain, _] = first_epochs(policy, StartFrom::Random, map, &b);
                assert!(plain.iter().all(|k| *k != u), "{policy:?}: random start");
            }
        }
    }
}
