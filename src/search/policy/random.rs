//! `policy: random`: random search, the agent's uniformly random bounded episodes
//! (the buffer epochs' distribution); the selection rule keeps the best. Its
//! [`Sampler`] also seeds the populations of `evolution` and the start of `local`.
use super::{Ctx, SearchPolicy, StartFrom};
use crate::agent::{Agent, Budget, Explore};
use crate::rng::Rng;
use crate::search::recipe::Recipe;
use crate::train::TrainError;

/// Random architectures as the agent draws them: per layer in order, a uniform
/// action mapped into the layer's budget bounds by the recipe's `agent.action-map`,
/// so every architecture meets the budget and ends within one allowed width of it.
pub struct Sampler {
    /// Only its action map is used (never its networks).
    agent: Agent,
    /// Where the searches built on it start (`search.start-from`).
    pub start: StartFrom,
}

impl Sampler {
    /// The sampler of recipe `r` for `layers` prunable layers.
    pub fn new(r: &Recipe, layers: usize, seed: u64) -> Sampler {
        let agent = Agent::new(r.agent.clone(), layers, r.training.epochs, seed);
        Sampler { agent, start: r.search.start_from }
    }

    /// One random architecture at epoch `t`.
    pub fn sample(&self, budget: &Budget, t: usize, rng: &mut Rng) -> Vec<usize> {
        self.agent.episode(budget, t, rng, Explore::Random).kept
    }
}

/// See the module documentation.
pub struct Random {
    pub sampler: Sampler,
}

impl SearchPolicy for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(&mut self, t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        let s = &self.sampler;
        Ok(super::with_start(s.start, ctx, <[usize]>::to_vec, |c| s.sample(c.budget, t, c.rng)))
    }
}
