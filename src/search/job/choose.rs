//! The architecture to prune to after the joint phase, its layers (`best_policy.yaml`,
//! `layers.svg`) and its test accuracy before fine-tuning.
use super::{Best, Chosen, Job};
use crate::search::best::Selection;
use crate::search::policy::Ctx;
use crate::search::recipe::Phase;
use crate::search::report::{self, LayerChoice};
use crate::search::reward;
use crate::search::{plot, SearchError};
use crate::train::evaluate;

impl Job<'_> {
    /// The architecture to prune to after the joint phase: the best incumbent, with
    /// `selection: rescore` scored again on the final weights (and whether that
    /// changed the choice); baselines without episodes (none kept) take their rule's
    /// architecture on the final weights (a search without any: uniform pruning).
    fn final_choice(&mut self) -> Result<(Best, Option<bool>), SearchError> {
        let (r, p) = (self.r, self.r.search.criterion.p());
        let mut inc = std::mem::take(&mut self.inc);
        let (net, budget, rset) = (&mut self.net, &self.budget, &self.rset);
        let mut changed = None;
        if r.search.selection == Selection::Rescore
            && self.policy.keeps_best()
            && !inc.items.is_empty()
        {
            let frozen = super::freeze(r, net, budget, self.ort_ok)?;
            changed = Some(inc.rescore(r.training.epochs, |kept| {
                rset.reward_with(net, frozen.as_ref(), budget, kept, p)
            })?);
        }
        if let Some(b) = inc.best() {
            return Ok((b.clone(), changed));
        }
        let kept = if self.policy.keeps_best() {
            reward::uniform_kept(budget)
        } else {
            let mut ctx = Ctx {
                budget,
                net: Some(net),
                rng: &mut self.rng,
                incumbent: None,
                phase: Phase::Weights,
                episodes: 1,
            };
            self.policy.propose(r.training.epochs.saturating_sub(1), &mut ctx)?.swap_remove(0)
        };
        let acc = rset.reward(net, budget, &kept, p)?;
        Ok((Best { reward: acc, kept, epoch: r.training.epochs }, changed))
    }

    /// The architecture to prune to ([`Job::final_choice`]), its layers (written with the policy and
    /// its plot by rank 0), and its test accuracy before fine-tuning, scored like the rewards.
    pub(super) fn choose(&mut self) -> Result<Chosen, SearchError> {
        let p = self.r.search.criterion.p();
        let (best, changed) = self.final_choice()?;
        let ks = reward::keep_sets(&self.net, &self.budget, &best.kept, p)?;
        let layers: Vec<LayerChoice> = self
            .budget
            .layers
            .iter()
            .zip(&best.kept)
            .map(|(l, &k)| LayerChoice {
                layer: l.index,
                group: l.group,
                name: l.label().to_string(),
                channels: l.channels,
                kept: k,
                ratio: k as f64 / l.channels as f64,
                kept_channels: ks[&l.group].clone(),
            })
            .collect();
        if self.root {
            report::write_policy(&self.o.run_dir, &best, &layers, &self.budget)?;
            plot::write_layers(&self.o.run_dir, &layers)?;
        }
        let masked_acc = self.masked_accuracy(&best, &ks)?;
        let trained = self.net.export()?;
        Ok(Chosen { best, changed, layers, masked_acc, trained })
    }

    /// Test accuracy of sub-network `best` (keep sets `ks`) before fine-tuning.
    fn masked_accuracy(&mut self, best: &Best, ks: &reward::KeepSets) -> Result<f64, SearchError> {
        let r = self.r;
        match &self.recal_x {
            Some(x) => {
                let f = reward::Frozen::new(
                    &self.net,
                    &self.budget,
                    r.search.criterion.p(),
                    r.input_shape.as_deref(),
                    true,
                )?;
                let narrow = f.narrow_recalibrated(&best.kept, x)?;
                Ok(evaluate(&narrow, &self.test)?.accuracy)
            }
            None => {
                self.net.set_masks(&reward::keep_vectors(&self.net, ks))?;
                let a = evaluate(&self.net, &self.test)?.accuracy;
                self.net.clear_masks();
                Ok(a)
            }
        }
    }
}
