//! `policy: local`: (1+λ) hill climbing around the incumbent. Each search epoch's
//! `episodes-per-epoch` architectures (the λ) are neighbours of the best
//! architecture the selection rule keeps (the 1): between 1 and `layers` random
//! layers moved `step` allowed widths up or down, the other layers repaired to meet
//! and use up the budget ([`super::mutate`]). The selection rule decides which
//! architecture is the next centre (with `selection: rescore`, on the same weights
//! as the children). Until there is an incumbent (the first search epoch), the
//! episodes are the agent's random ones.
use super::mutate;
use super::random::Sampler;
use super::{Ctx, SearchPolicy};
use crate::agent::Budget;
use crate::rng::Rng;
use crate::train::TrainError;
use serde::{Deserialize, Serialize};

/// `local:` section of a prune recipe (read by `policy: local`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LocalConfig {
    /// Most layers a neighbour moves (each neighbour moves 1 to `layers` of them,
    /// uniformly). Default 2.
    pub layers: usize,
    /// Allowed widths (multiples of `channel-multiple`) a moved layer goes up or down. Default 1.
    pub step: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig { layers: 2, step: 1 }
    }
}

impl LocalConfig {
    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        super::at_least_one(&[("layers", self.layers), ("step", self.step)])
    }
}

/// See the module documentation.
pub struct Local {
    cfg: LocalConfig,
    sampler: Sampler,
}

impl Local {
    pub fn new(cfg: LocalConfig, sampler: Sampler) -> Local {
        Local { cfg, sampler }
    }

    /// A neighbour of `centre` and the layers it moved.
    pub fn neighbour(
        &self,
        budget: &Budget,
        centre: &[usize],
        rng: &mut Rng,
    ) -> (Vec<usize>, Vec<usize>) {
        let (most, step) = (self.cfg.layers, self.cfg.step);
        mutate::child(budget, centre, rng, |kept, rng| {
            let n = 1 + rng.below_usize(most.min(kept.len()).max(1));
            let moved = mutate::layers(kept.len(), n, rng);
            for &l in &moved {
                mutate::step_width(budget, kept, l, step, rng);
            }
            moved
        })
    }
}

impl SearchPolicy for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn propose(&mut self, t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        let centre = ctx.incumbent.map(|b| b.kept.clone());
        let start = self.sampler.start;
        Ok(super::with_start(start, ctx, <[usize]>::to_vec, |c| match &centre {
            Some(centre) => self.neighbour(c.budget, centre, c.rng).0,
            None => self.sampler.sample(c.budget, t, c.rng),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::best::Best;
    use crate::search::policy::testutil::{budget, in_bounds, random_sampler, search, uses_budget};
    use crate::search::recipe::Phase;

    #[test]
    fn neighbours_move_a_layer_or_two_one_step_and_keep_the_budget() {
        let b = budget(0.5, 8);
        let mut l = Local::new(LocalConfig::default(), random_sampler(9));
        let mut rng = Rng::new(7);
        // No incumbent yet: random architectures.
        let mut ctx = Ctx {
            budget: &b,
            net: None,
            rng: &mut rng,
            incumbent: None,
            phase: Phase::Baseline,
            episodes: 3,
        };
        let first = l.propose(0, &mut ctx).unwrap();
        assert!(first.iter().all(|k| in_bounds(&b, k)));
        let centre = Best { reward: 0.5, kept: first[0].clone(), epoch: 1 };
        let step = |l: usize, from: usize, to: usize| {
            let allowed: Vec<usize> = b.allowed(l).collect();
            let at = |w: usize| allowed.iter().position(|&x| x == w).unwrap();
            at(from).abs_diff(at(to))
        };
        for _ in 0..30 {
            let (k, moved) = l.neighbour(&b, &centre.kept, &mut rng);
            assert!((1..=2).contains(&moved.len()), "{moved:?}");
            for &m in &moved {
                assert_eq!(
                    step(m, centre.kept[m], k[m]),
                    1,
                    "layer {m}: {:?} -> {k:?}",
                    centre.kept
                );
            }
            assert!(in_bounds(&b, &k) && uses_budget(&b, &k) && k != centre.kept, "{k:?}");
        }
        // With an incumbent, every episode is one of its neighbours.
        let mut ctx = Ctx {
            budget: &b,
            net: None,
            rng: &mut rng,
            incumbent: Some(&centre),
            phase: Phase::Baseline,
            episodes: 5,
        };
        for k in l.propose(1, &mut ctx).unwrap() {
            let moved: Vec<usize> = (0..k.len()).filter(|&i| k[i] != centre.kept[i]).collect();
            assert!(!moved.is_empty() && in_bounds(&b, &k));
        }
    }

    #[test]
    fn hill_climbing_never_accepts_a_worse_incumbent_and_climbs() {
        let b = budget(0.4, 4);
        let mut l = Local::new(LocalConfig::default(), random_sampler(9));
        for seed in 0..3 {
            let s = search(&mut l, &b, 12, 4, seed);
            let v = &s.incumbent;
            assert!(v.windows(2).all(|w| w[1] >= w[0]), "seed {seed}: {v:?}");
            assert!(v[11] > v[0], "seed {seed}: no climb {v:?}");
            assert!(s.proposed.iter().all(|k| in_bounds(&b, k)));
        }
    }
}
