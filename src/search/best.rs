//! Which sub-network the search keeps (Alg. 1 line 8 "the policy with the
//! highest reward so far") and finally prunes to.
//!
//! The paper keeps the single highest reward ever seen (`selection:
//! max-reward`). Rewards of different epochs are scored on different weights
//! and each carries the sampling noise of the reward subset, so over hundreds of
//! episodes that maximum is mostly a lottery won by noise and by the epoch's
//! accuracy level (random search wins it as often as the agent). `selection:
//! rescore` (default) keeps the `incumbents` best architectures and scores them
//! again on each search epoch's weights before that epoch's episodes compete
//! with them, and once more on the final weights, where the architecture to
//! prune is chosen: every comparison is between scores on the same weights.
use serde::{Deserialize, Serialize};

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The paper: the highest reward ever seen, never scored again.
    MaxReward,
    /// Top-k incumbents re-scored on every search epoch's and on the final weights.
    Rescore,
}

/// A scored architecture: reward, per-layer kept counts, epoch (1-based) of the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub reward: f64,
    pub kept: Vec<usize>,
    pub epoch: usize,
}

/// The architectures the search keeps, best first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Incumbents {
    pub items: Vec<Best>,
}

impl Incumbents {
    /// The best architecture (by its latest score).
    pub fn best(&self) -> Option<&Best> {
        self.items.first()
    }

    /// Offers a newly scored architecture; keeps the `k` best distinct ones. A
    /// width vector already kept is scored again on the same weights: with
    /// `average`, the two scores are averaged (rescore), else the higher one stays
    /// (max-reward). Ties keep the older entry first.
    pub fn offer(&mut self, b: Best, k: usize, average: bool) {
        if let Some(old) = self.items.iter_mut().find(|o| o.kept == b.kept) {
            if average && old.epoch == b.epoch {
                old.reward = 0.5 * (old.reward + b.reward);
            } else if average || b.reward > old.reward {
                *old = b;
            }
        } else {
            self.items.push(b);
        }
        self.items.sort_by(|x, y| y.reward.total_cmp(&x.reward));
        self.items.truncate(k.max(1));
    }

    /// Replaces everything by `b` (baselines without a search follow their current choice).
    pub fn replace(&mut self, b: Best) {
        self.items = vec![b];
    }

    /// Scores every incumbent again (`score(kept)` on the current weights, epoch
    /// `epoch` 1-based) and re-sorts. Returns whether the best one changed.
    pub fn rescore<E>(
        &mut self,
        epoch: usize,
        mut score: impl FnMut(&[usize]) -> Result<f64, E>,
    ) -> Result<bool, E> {
        let before = self.best().map(|b| b.kept.clone());
        for b in &mut self.items {
            b.reward = score(&b.kept)?;
            b.epoch = epoch;
        }
        self.items.sort_by(|x, y| y.reward.total_cmp(&x.reward));
        Ok(before != self.best().map(|b| b.kept.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(r: f64, k: usize, e: usize) -> Best {
        Best { reward: r, kept: vec![k], epoch: e }
    }

    #[test]
    fn max_reward_with_one_incumbent_is_the_papers_rule() {
        let mut inc = Incumbents::default();
        for (r, k) in [(0.5, 1), (0.7, 2), (0.7, 3), (0.6, 4), (0.8, 2)] {
            inc.offer(b(r, k, 1), 1, false);
        }
        assert_eq!(inc.items, vec![b(0.8, 2, 1)]);
        // An equal reward does not replace (strictly greater only).
        inc.offer(b(0.8, 5, 2), 1, false);
        assert_eq!(inc.best().unwrap().kept, vec![2]);
    }

    #[test]
    fn rescoring_ranks_on_the_current_weights() {
        let mut inc = Incumbents::default();
        for (r, k) in [(0.9, 1), (0.8, 2), (0.7, 3), (0.6, 4)] {
            inc.offer(b(r, k, 1), 3, true);
        }
        assert_eq!(inc.items.iter().map(|x| x.kept[0]).collect::<Vec<_>>(), vec![1, 2, 3]);
        // On new weights architecture 3 is best: the lucky 0.9 loses its place.
        let changed = inc.rescore(2, |k| Ok::<_, ()>([0.0, 0.5, 0.6, 0.7][k[0]])).unwrap();
        assert!(changed);
        assert_eq!(inc.best(), Some(&b(0.7, 3, 2)));
        // The same architecture scored twice on the same weights: the mean.
        inc.offer(b(0.5, 3, 2), 3, true);
        assert_eq!(inc.best(), Some(&b(0.6, 3, 2)));
        assert_eq!(inc.items.len(), 3);
    }
}
