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

    /// Whole episodes, each found from a transition drawn uniformly (so an episode's
    /// chance is its length's share), until they hold at least `n` transitions: their
    /// transitions one episode after another, each in layer order, and per transition
    /// the index of its episode among them. An episode whose first layers the ring
    /// has overwritten comes back as the part still held.
    pub fn sample_episodes(&self, n: usize, rng: &mut Rng) -> (Vec<&Transition>, Vec<usize>) {
        let (mut batch, mut episode_of) = (Vec::new(), Vec::new());
        for e in 0.. {
            if batch.len() >= n.max(1) {
                break;
            }
            for i in self.episode_at(rng.below_usize(self.items.len())) {
                batch.push(&self.items[i]);
                episode_of.push(e);
            }
        }
        (batch, episode_of)
    }

    /// Indices of the episode holding item `i`, in order: back to the step after the
    /// previous episode's last (or to the oldest item held), on to its own last.
    fn episode_at(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let len = self.items.len();
        let full = len == self.capacity;
        let prev = |j: usize| if j > 0 { Some(j - 1) } else { full.then(|| len - 1) };
        // The oldest item held: nothing before it belongs to its episode.
        let oldest = if full { self.next } else { 0 };
        let same = |a: usize, b: usize| {
            let (x, y) = (&self.items[a], &self.items[b]);
            x.epoch == y.epoch && x.reward.to_bits() == y.reward.to_bits()
        };
        let mut first = i;
        while first != oldest {
            match prev(first) {
                Some(p) if !self.items[p].done && same(p, i) => first = p,
                _ => break,
            }
        }
        let mut last = i;
        while !self.items[last].done {
            let nx = (last + 1) % len;
            if nx == oldest || !same(nx, i) {
                break;
            }
            last = nx;
        }
        let count = (last + len - first) % len + 1;
        (0..count).map(move |k| (first + k) % len)
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

    /// Episodes of 3 layers (epoch e, reward e) pushed into a ring of `capacity`.
    fn episodes(capacity: usize, count: usize) -> Replay {
        let mut r = Replay::new(capacity);
        for e in 0..count {
            for l in 0..3 {
                let (state, next_state, done) = (vec![l as f32], vec![], l == 2);
                r.push(Transition {
                    state,
                    action: 0.0,
                    reward: e as f32,
                    next_state,
                    done,
                    epoch: e,
                });
            }
        }
        r
    }

    #[test]
    fn sampled_episodes_are_whole_and_in_layer_order_across_the_ring_seam() {
        // Capacity 7 after 4 episodes (12 pushes): the oldest item is episode 1's
        // last layer (position 5); episode 2 spans the seam (positions 6, 0, 1).
        let r = episodes(7, 4);
        let mut rng = Rng::new(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            for ep in grouped(r.sample_episodes(4, &mut rng)) {
                let layers: Vec<f32> = ep.iter().map(|t| t.state[0]).collect();
                let e = ep[0].epoch;
                assert!(ep.iter().all(|t| t.epoch == e) && ep.last().unwrap().done);
                let want: Vec<f32> = if e == 1 { vec![2.0] } else { vec![0.0, 1.0, 2.0] };
                assert_eq!(layers, want, "episode {e}");
                seen.insert(e);
            }
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        // Not full: whole episodes, at least n transitions.
        let r = episodes(100, 5);
        let eps = grouped(r.sample_episodes(7, &mut rng));
        assert!(eps.iter().map(Vec::len).sum::<usize>() >= 7 && eps.iter().all(|e| e.len() == 3));
    }

    /// The transitions of [`Replay::sample_episodes`] grouped by their episode index.
    fn grouped((batch, of): (Vec<&Transition>, Vec<usize>)) -> Vec<Vec<&Transition>> {
        let mut out: Vec<Vec<&Transition>> = Vec::new();
        for (t, e) in batch.into_iter().zip(of) {
            if e == out.len() {
                out.push(Vec::new());
            }
            out[e].push(t);
        }
        out
    }
}
