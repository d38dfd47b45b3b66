//! `policy: evolution`: regularised evolution (Real, Aggarwal, Huang and Le,
//! "Regularized Evolution for Image Classifier Architecture Search", AAAI 2019).
//!
//! A population of `population` architectures, first drawn by the agent's random
//! sampler ([`super::random::Sampler`]: the same bounds as its episodes). Each
//! child: `tournament` members drawn uniformly at random (with replacement, as in
//! the paper's Algorithm 1), the fittest of them is the parent, `mutations` of its
//! layers move 1 to `step` allowed widths up or down ([`super::mutate`]; a uniform
//! redraw of the width made children no better than random architectures on the
//! bench's surfaces), the other layers are repaired to meet and use up the budget. An epoch's `episodes-per-epoch` children
//! are drawn from the population as it was at the start of the epoch (a batch of
//! the paper's cycles), scored on the epoch's weights, and join the population;
//! the oldest members leave it (ageing) until `population` remain.
//!
//! Rewards of different epochs are measured on different weights (their level
//! rises as the network trains; on `rlal bench agent`'s surfaces, base(t) rises).
//! With `search.selection: rescore` a member's fitness is therefore its reward
//! minus the incumbent's reward on the same weights (the selection rule re-scores
//! the incumbent at the start of every search epoch; in the first, the epoch's best
//! reward, which is what the incumbent then scores): an advantage over a common
//! reference, whatever else the epoch scored. With `max-reward` (no re-scoring) the
//! fitness is the raw reward, as in the paper. Ageing bounds how long a lucky or
//! stale score can stay: a member lives `population / episodes-per-epoch` epochs.
use super::mutate;
use super::random::Sampler;
use super::{Ctx, SearchPolicy};
use crate::agent::Budget;
use crate::rng::Rng;
use crate::train::TrainError;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use tch::Tensor;

/// `evolution:` section of a prune recipe (read by `policy: evolution`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EvolutionConfig {
    /// Architectures in the population (the paper's P). Default 20.
    pub population: usize,
    /// Members drawn for each parent's tournament (the paper's S), at most
    /// `population`. Default 5.
    pub tournament: usize,
    /// Layers whose width a mutation changes (all of them when more than the graph's
    /// prunable layers). Default 1 (the paper's single mutation).
    pub mutations: usize,
    /// Most allowed widths (multiples of `channel-multiple`) a mutated layer moves up
    /// or down (1 to `step`, uniformly). Default 2.
    pub step: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig { population: 20, tournament: 5, mutations: 1, step: 2 }
    }
}

impl EvolutionConfig {
    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.population < 2 {
            return Err(("population", format!("{} must be at least 2", self.population)));
        }
        if self.tournament == 0 || self.tournament > self.population {
            return Err((
                "tournament",
                format!("{} must be in 1..=population ({})", self.tournament, self.population),
            ));
        }
        super::at_least_one(&[("mutations", self.mutations), ("step", self.step)])
    }
}

/// A member of the population: its widths, its fitness and the epoch (1-based) of its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub kept: Vec<usize>,
    pub fitness: f64,
    pub epoch: usize,
}

/// See the module documentation.
pub struct Evolution {
    cfg: EvolutionConfig,
    sampler: Sampler,
    /// Oldest first.
    population: VecDeque<Member>,
    /// Fitness relative to the re-scored incumbent (`selection: rescore`), else raw rewards.
    relative: bool,
    /// The epoch's reference reward (set by `propose`, read by `observe`).
    baseline: Option<f64>,
}

/// The policy's `search.json` state.
#[derive(Serialize, Deserialize)]
struct State {
    population: VecDeque<Member>,
}

impl Evolution {
    /// `relative`: fitness relative to the incumbent re-scored on each epoch's weights.
    pub fn new(cfg: EvolutionConfig, sampler: Sampler, relative: bool) -> Evolution {
        Evolution { cfg, sampler, population: VecDeque::new(), relative, baseline: None }
    }

    /// The population, oldest first.
    pub fn population(&self) -> &VecDeque<Member> {
        &self.population
    }

    /// A child of a tournament's winner (see the module documentation).
    fn child(&self, budget: &Budget, rng: &mut Rng) -> Vec<usize> {
        let parent = &self.population[tournament(&self.population, self.cfg.tournament, rng)];
        let (n, most) = (self.cfg.mutations, self.cfg.step);
        let (child, _) = mutate::child(budget, &parent.kept, rng, |kept, rng| {
            let moved = mutate::layers(kept.len(), n, rng);
            for &l in &moved {
                let steps = 1 + rng.below_usize(most);
                mutate::step_width(budget, kept, l, steps, rng);
            }
            moved
        });
        child
    }
}

/// The index of the fittest of `size` members drawn uniformly with replacement
/// (ties: the first drawn).
pub fn tournament(population: &VecDeque<Member>, size: usize, rng: &mut Rng) -> usize {
    let mut best = rng.below_usize(population.len());
    for _ in 1..size {
        let i = rng.below_usize(population.len());
        if population[i].fitness > population[best].fitness {
            best = i;
        }
    }
    best
}

impl SearchPolicy for Evolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    /// Random architectures while the population is not full, then children.
    fn propose(&mut self, t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        self.baseline = ctx.incumbent.filter(|b| b.epoch == t + 1).map(|b| b.reward);
        let missing = self.cfg.population.saturating_sub(self.population.len());
        let random = if self.population.is_empty() { ctx.episodes } else { missing };
        let (start, mut i) = (self.sampler.start, 0);
        Ok(super::with_start(start, ctx, <[usize]>::to_vec, |c| {
            i += 1;
            if i <= random {
                self.sampler.sample(c.budget, t, c.rng)
            } else {
                self.child(c.budget, c.rng)
            }
        }))
    }

    /// The scored architectures join the population; the oldest leave it.
    fn observe(&mut self, t: usize, kept: &[Vec<usize>], rewards: &[f64]) {
        let best = rewards.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let base = match self.relative {
            true => self.baseline.take().unwrap_or(best),
            false => 0.0,
        };
        for (k, &r) in kept.iter().zip(rewards) {
            self.population.push_back(Member { kept: k.clone(), fitness: r - base, epoch: t + 1 });
        }
        while self.population.len() > self.cfg.population {
            self.population.pop_front();
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(State { population: self.population.clone() })
            .expect("the population serialises")
    }

    fn restore(
        &mut self,
        state: &serde_json::Value,
        _tensors: &HashMap<String, Tensor>,
    ) -> Result<(), super::PolicyStateError> {
        let st: State = super::from_state("evolution", state)?;
        self.population = st.population;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::best::Best;
    use crate::search::policy::testutil::{budget, in_bounds, random_sampler, search, uses_budget};
    use crate::search::recipe::Phase;
    use crate::search::surface::{Surface, SurfaceConfig};

    fn members(fitness: &[f64]) -> VecDeque<Member> {
        fitness
            .iter()
            .enumerate()
            .map(|(i, &f)| Member { kept: vec![i], fitness: f, epoch: 1 })
            .collect()
    }

    #[test]
    fn the_tournament_picks_the_fittest_of_its_sample() {
        let pop = members(&[0.3, -0.1, 0.9, 0.2, 0.5, -0.4, 0.1]);
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut replay = rng.clone();
            let drawn: Vec<usize> = (0..3).map(|_| replay.below_usize(pop.len())).collect();
            let want = drawn.iter().copied().fold(drawn[0], |b, i| {
                if pop[i].fitness > pop[b].fitness {
                    i
                } else {
                    b
                }
            });
            assert_eq!(tournament(&pop, 3, &mut rng), want, "seed {seed}: drew {drawn:?}");
            assert_eq!(rng, replay, "a tournament of 3 draws 3 members");
        }
        // A tournament as large as the population nearly always finds the fittest.
        let mut rng = Rng::new(1);
        let wins = (0..100).filter(|_| tournament(&pop, 40, &mut rng) == 2).count();
        assert!(wins >= 99, "{wins}");
    }

    fn evolution(population: usize, b: &Budget, relative: bool) -> Evolution {
        let cfg = EvolutionConfig { population, tournament: 3, ..Default::default() };
        Evolution::new(cfg, random_sampler(b.layers.len()), relative)
    }

    fn propose(
        e: &mut Evolution,
        b: &Budget,
        t: usize,
        rng: &mut Rng,
        incumbent: Option<&Best>,
    ) -> Vec<Vec<usize>> {
        let phase = Phase::Baseline;
        let mut ctx = Ctx { budget: b, net: None, rng, incumbent, phase, episodes: 4 };
        e.propose(t, &mut ctx).unwrap()
    }

    #[test]
    fn ageing_removes_the_oldest_and_fitness_is_relative_to_the_incumbent() {
        let b = budget(0.5, 8);
        let mut e = evolution(6, &b, true);
        let mut rng = Rng::new(3);
        for t in 0..3 {
            // The incumbent re-scored on epoch t's weights (none in the first epoch).
            let inc = Best { reward: 0.52 + 0.1 * t as f64, kept: vec![], epoch: t + 1 };
            let kept = propose(&mut e, &b, t, &mut rng, (t > 0).then_some(&inc));
            let rewards: Vec<f64> =
                (0..4).map(|i| 0.5 + 0.1 * t as f64 + 0.01 * i as f64).collect();
            e.observe(t, &kept, &rewards);
            let last = e.population().back().unwrap();
            assert_eq!((&last.kept, last.epoch), (&kept[3], t + 1));
            // 0.53 + 0.1 t minus the incumbent's 0.52 + 0.1 t (first epoch: its best, 0.53).
            let want = if t == 0 { 0.0 } else { 0.01 };
            assert!((last.fitness - want).abs() < 1e-12, "epoch {t}: {}", last.fitness);
        }
        // 12 scored, 6 kept: the two of epoch 2 and the four of epoch 3, oldest first.
        let epochs: Vec<usize> = e.population().iter().map(|m| m.epoch).collect();
        assert_eq!(epochs, [2, 2, 3, 3, 3, 3]);
        // Exact resume: the state restores the same population.
        let mut f = evolution(6, &b, true);
        f.restore(&e.state(), &Default::default()).unwrap();
        assert_eq!(f.population(), e.population());
        // An incumbent not re-scored on this epoch's weights is no reference; without
        // re-scoring (`max-reward`) the fitness is the raw reward.
        for (relative, want) in [(true, [-0.2, 0.0]), (false, [0.4, 0.6])] {
            let mut g = evolution(6, &b, relative);
            let stale = Best { reward: 0.9, kept: vec![], epoch: 1 };
            let kept = propose(&mut g, &b, 4, &mut rng, Some(&stale));
            g.observe(4, &kept[..2], &[0.4, 0.6]);
            let got: Vec<f64> = g.population().iter().map(|m| m.fitness).collect();
            assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12), "{got:?}");
        }
    }

    #[test]
    fn children_are_mutants_within_the_budget_and_bounds() {
        let b = budget(0.4, 4);
        let mut e = evolution(4, &b, true);
        let mut rng = Rng::new(5);
        // The first epoch fills the population with the agent's random architectures.
        let first = propose(&mut e, &b, 0, &mut rng, None);
        assert!(first.iter().all(|k| in_bounds(&b, k)));
        // A population of one architecture: every child is that parent mutated.
        let parent = first[0].clone();
        e.observe(0, &vec![parent.clone(); 4], &[0.1, 0.4, 0.2, 0.3]);
        for t in 1..6 {
            for c in propose(&mut e, &b, t, &mut rng, None) {
                assert!(in_bounds(&b, &c) && uses_budget(&b, &c) && c != parent, "{c:?}");
            }
        }
    }

    #[test]
    fn the_population_improves_on_a_fixed_surface() {
        let b = budget(0.4, 4);
        for seed in 0..3 {
            let mut e = evolution(8, &b, true);
            let s = search(&mut e, &b, 15, 4, seed);
            let values = Surface::new(&b, 2, &SurfaceConfig::default(), seed);
            let mean = |ks: &[Vec<usize>]| {
                ks.iter().map(|k| values.value(1, k)).sum::<f64>() / ks.len() as f64
            };
            let (first, last) = (mean(&s.proposed[..8]), mean(&s.proposed[48..]));
            assert!(last > first + 0.005, "seed {seed}: children {last:.4}, random {first:.4}");
            assert!(s.proposed.iter().all(|k| in_bounds(&b, k)));
        }
    }
}
