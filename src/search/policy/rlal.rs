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
        if let Some(b) = ctx.incumbent.filter(|b| b.epoch == t + 1) {
            // The incumbent re-scored on this epoch's weights (`reward-norm: incumbent`).
            self.agent.replay.baselines.insert(t, b.reward as f32);
        }
        let explore = if ctx.phase == Phase::Agent { Explore::Policy } else { Explore::Random };
        if explore == Explore::Policy && t == self.span.0 && self.agent.cfg.actor_warm_start {
            let start = match ctx.incumbent {
                Some(b) => b.kept.clone(),
                None => crate::search::reward::uniform_kept(ctx.budget),
            };
            self.agent.warm_start(ctx.budget, t, &start);
        }
        let (agent, budget) = (&self.agent, ctx.budget);
        // Buffer episodes around the uniform architecture (`agent.buffer-spread`), the
        // share `buffer-near-share` of them, spread evenly over the epoch's draws.
        let near = match (explore, agent.cfg.buffer_spread) {
            (Explore::Random, Some(s)) => Some((crate::search::reward::uniform_kept(budget), s)),
            _ => None,
        };
        let share = agent.cfg.buffer_near_share;
        // `agent.greedy-episode`: the agent epoch's first episode is the policy's mean.
        let mut greedy = explore == Explore::Policy && agent.cfg.greedy_episode;
        let mut drawn = 0.0f64;
        self.pending = super::with_start(
            self.start,
            ctx,
            |kept| agent.episode_to(budget, t, kept),
            |c| {
                drawn += 1.0;
                let turn = (drawn * share).floor() > ((drawn - 1.0) * share).floor();
                match &near {
                    Some((uniform, s)) if turn => {
                        agent.episode_near(c.budget, t, uniform, *s, c.rng)
                    }
                    _ if std::mem::take(&mut greedy) => {
                        agent.episode(c.budget, t, c.rng, Explore::Greedy)
                    }
                    _ => agent.episode(c.budget, t, c.rng, explore),
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::policy::testutil::{budget, in_bounds};
    use crate::search::reward::uniform_kept;

    /// A buffer epoch's proposals of the agent with `agent.buffer-spread: spread`.
    fn buffer_epoch(spread: Option<f64>, share: f64, b: &Budget) -> Vec<Vec<usize>> {
        let mut r = Recipe::default();
        (r.agent.buffer_spread, r.search.start_from) = (spread, StartFrom::Random);
        r.agent.buffer_near_share = share;
        let mut p = Rlal::new(&r, b.layers.len(), 0);
        let mut rng = Rng::new(2);
        let (phase, episodes) = (Phase::Buffer, 12);
        let mut ctx = Ctx { budget: b, net: None, rng: &mut rng, incumbent: None, phase, episodes };
        p.propose(0, &mut ctx).unwrap()
    }

    #[test]
    fn with_a_buffer_spread_the_buffer_episodes_lie_around_uniform() {
        let b = budget(0.45, 4);
        let u = uniform_kept(&b);
        assert!(buffer_epoch(Some(1e-9), 1.0, &b).iter().all(|k| *k == u));
        let half = buffer_epoch(Some(1e-9), 0.5, &b);
        let at_u: Vec<bool> = half.iter().map(|k| *k == u).collect();
        assert_eq!(at_u, [false, true].repeat(6), "every other episode around uniform");
        let far = |v: &[Vec<usize>]| -> usize {
            v.iter().flat_map(|k| k.iter().zip(&u).map(|(x, y)| x.abs_diff(*y))).sum()
        };
        let (near, random) = (buffer_epoch(Some(0.05), 1.0, &b), buffer_epoch(None, 1.0, &b));
        assert!(near.iter().chain(&random).all(|k| in_bounds(&b, k)));
        assert!(near.iter().any(|k| *k != u), "a spread of 0.05 moves some layer");
        assert!(far(&near) * 2 < far(&random), "{} vs {}", far(&near), far(&random));
    }

    #[test]
    fn with_greedy_episode_an_agent_epoch_starts_with_the_policys_mean() {
        let b = budget(0.45, 4);
        let proposals = |greedy: bool| {
            let mut r = Recipe::default();
            (r.agent.greedy_episode, r.search.start_from) = (greedy, StartFrom::Random);
            let mut p = Rlal::new(&r, b.layers.len(), 0);
            let mut rng = Rng::new(5);
            let (phase, episodes) = (Phase::Agent, 6);
            let mut ctx =
                Ctx { budget: &b, net: None, rng: &mut rng, incumbent: None, phase, episodes };
            (p.propose(3, &mut ctx).unwrap(), p.greedy(&b, 3).unwrap())
        };
        let (with, mean) = proposals(true);
        assert_eq!(with[0], mean, "the first episode is the greedy one");
        assert!(with[1..].iter().any(|k| *k != mean), "the others are sampled");
        let (without, mean) = proposals(false);
        assert!(without.iter().filter(|k| **k == mean).count() < 3, "{without:?} vs {mean:?}");
        assert!(with.iter().all(|k| in_bounds(&b, k)));
    }

    #[test]
    fn a_warm_started_actor_begins_the_agent_phase_at_the_incumbent() {
        let b = budget(0.45, 4);
        let kept = buffer_epoch(None, 1.0, &b).swap_remove(3);
        let greedy_after_first_agent_epoch = |warm: bool| {
            let mut r = Recipe::default();
            (r.agent.actor_warm_start, r.search.start_from) = (warm, StartFrom::Random);
            let t = r.agent_span().0;
            let mut p = Rlal::new(&r, b.layers.len(), 0);
            let best = crate::search::best::Best { reward: 0.6, kept: kept.clone(), epoch: t };
            let (mut rng, phase, episodes) = (Rng::new(5), Phase::Agent, 4);
            let incumbent = Some(&best);
            let mut ctx = Ctx { budget: &b, net: None, rng: &mut rng, incumbent, phase, episodes };
            p.propose(t, &mut ctx).unwrap();
            p.greedy(&b, t).unwrap()
        };
        assert_eq!(greedy_after_first_agent_epoch(true), kept);
        assert_ne!(greedy_after_first_agent_epoch(false), kept);
    }

    #[test]
    fn the_incumbent_rescored_on_an_epochs_weights_is_its_baseline() {
        let b = budget(0.45, 4);
        let mut p = Rlal::new(&Recipe::default(), b.layers.len(), 0);
        let mut rng = Rng::new(2);
        for (t, epoch) in [(3, 4), (5, 2)] {
            let best = crate::search::best::Best { reward: 0.6, kept: uniform_kept(&b), epoch };
            let (phase, episodes) = (Phase::Agent, 2);
            let incumbent = Some(&best);
            let mut ctx = Ctx { budget: &b, net: None, rng: &mut rng, incumbent, phase, episodes };
            p.propose(t, &mut ctx).unwrap();
        }
        // Epoch 3's incumbent was re-scored there (epoch 4 = after epoch 3); epoch 5's was not.
        let want: std::collections::BTreeMap<usize, f32> = [(3, 0.6)].into();
        assert_eq!(p.agent.replay.baselines, want);
    }
}
