//! `policy: rlal`: the RLAL agent (paper Alg. 1; [`crate::agent`]): uniformly random
//! episodes in the buffer epochs, the actor's episodes and SAC + environment-model
//! updates in the agent epochs. Its checkpoint is the agent's networks with their
//! optimisers' moments (`agent.*` tensors) and the replay buffer.
use super::{Ctx, Learned, SearchPolicy, StartFrom};
use crate::agent::{Agent, Budget, Diverged, Episode, Explore, Replay};
use crate::rng::Rng;
use crate::search::recipe::{Phase, Recipe};
use crate::train::TrainError;
use std::collections::HashMap;
use tch::Tensor;

/// See the module documentation.
pub struct Rlal {
    agent: Agent,
    /// The agent epochs `[first, end)` ([`Recipe::agent_span`]).
    span: (usize, usize),
    /// The episodes proposed and not yet observed.
    pending: Vec<Episode>,
    /// Where the search starts (`search.start-from`).
    start: StartFrom,
}

impl Rlal {
    /// The agent of recipe `r` for `layers` prunable layers (`seed`: its networks').
    pub fn new(r: &Recipe, layers: usize, seed: u64) -> Rlal {
        let agent = Agent::new(r.agent.clone(), layers, r.training.epochs, seed);
        Rlal { agent, span: r.agent_span(), pending: Vec::new(), start: r.search.start_from }
    }
}

/// The policy's `search.json` state.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    replay: Replay,
}

impl SearchPolicy for Rlal {
    fn name(&self) -> &'static str {
        "rlal"
    }

    fn propose(&mut self, t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        self.agent.begin_epoch(t, self.span);
        let explore = if ctx.phase == Phase::Agent { Explore::Policy } else { Explore::Random };
        let (agent, budget) = (&self.agent, ctx.budget);
        self.pending = super::with_start(
            self.start,
            ctx,
            |kept| agent.episode_to(budget, t, kept),
            |c| agent.episode(c.budget, t, c.rng, explore),
        );
        Ok(self.pending.iter().map(|e| e.kept.clone()).collect())
    }

    fn observe(&mut self, _t: usize, _kept: &[Vec<usize>], rewards: &[f64]) {
        for (ep, &r) in std::mem::take(&mut self.pending).iter().zip(rewards) {
            self.agent.remember(ep, r as f32);
        }
    }

    fn learns(&self, phase: Phase) -> bool {
        phase == Phase::Agent
    }

    fn update(&mut self, rng: &mut Rng) -> Result<Option<Learned>, Diverged> {
        let stats = self.agent.update(rng)?;
        let (alpha, env_model) = (self.agent.sac.cfg.alpha, self.agent.cfg.env_model);
        Ok(Some(Learned { stats, alpha, env_model }))
    }

    fn greedy(&self, budget: &Budget, t: usize) -> Option<Vec<usize>> {
        Some(self.agent.episode(budget, t, &mut Rng::new(0), Explore::Greedy).kept)
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        self.agent.tensors()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(State { replay: self.agent.replay.clone() })
            .expect("the replay serialises")
    }

    fn restore(
        &mut self,
        state: &serde_json::Value,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<(), super::PolicyStateError> {
        let st: State = super::from_state("rlal", state)?;
        self.agent.load_tensors(tensors)?;
        self.agent.replay = st.replay;
        Ok(())
    }
}
