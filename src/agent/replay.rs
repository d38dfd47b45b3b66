//! Replay buffer of agent transitions (s, a, r, s', done, epoch).
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// One step of an episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub state: Vec<f32>,
    /// The action as learned: the applied pruning ratio (`action-map: clip`) or
    /// the actor's sample in [0, 1] (`affine`).
    pub action: f32,
    /// The episode's reward (accuracy of the pruned network on the reward subset).
    pub reward: f32,
    pub next_state: Vec<f32>,
    pub done: bool,
    /// Weight-training epoch the episode ran after (indexes the environment model).
    pub epoch: usize,
}

/// A ring buffer with uniform sampling.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Replay {
    pub capacity: usize,
    pub items: Vec<Transition>,
    next: usize,
    /// Per epoch, the incumbent's reward on that epoch's weights, where there was one
    /// (`reward-norm: incumbent`).
    #[serde(default)]
    pub baselines: std::collections::BTreeMap<usize, f32>,
}

impl Replay {
    pub fn new(capacity: usize) -> Replay {
        Replay {
            capacity: capacity.max(1),
            items: Vec::new(),
            next: 0,
            baselines: Default::default(),
        }
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn push(&mut self, t: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
    }
    /// `n` transitions drawn uniformly with replacement.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<&Transition> {
        (0..n).map(|_| &self.items[rng.below_usize(self.items.len())]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_overwrites_oldest_and_round_trips() {
        let mut r = Replay::new(3);
        for i in 0..5 {
            r.push(Transition {
                state: vec![i as f32],
                action: 0.0,
                reward: 0.0,
                next_state: vec![],
                done: false,
                epoch: i,
            });
        }
        let epochs: Vec<usize> = r.items.iter().map(|t| t.epoch).collect();
        assert_eq!(epochs, vec![3, 4, 2]);
        let back: Replay = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.items, r.items);
        let mut rng = Rng::new(1);
        assert_eq!(r.sample(10, &mut rng).len(), 10);
    }
}
