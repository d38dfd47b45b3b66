//! The joint phase (Alg. 1): each epoch trains the weights (with the alignment
//! penalty towards the best policy), then its phase decides the search: the search
//! policy's episodes scored on the frozen weights, incumbents re-scored, the policy's
//! learning (the agent updates, which may run beside the next epoch's training,
//! `agent.overlap`).
use super::Job;
use crate::agent::Diverged;
use crate::search::best::{Best, Selection};
use crate::search::policy::{Ctx, Learned};
use crate::search::report::EpochRow;
use crate::search::reward;
use crate::search::SearchError;
use crate::train::masks::GroupLasso;
use crate::train::trainer;
use crate::train::{evaluate, Net, TrainError};
use anyhow::anyhow;
use std::time::Instant;
use tch::Tensor;

/// A finished epoch whose policy updates run beside the next epoch's weight training
/// (`agent.overlap`): its metrics row and checkpoint wait for them. (The best policy
/// needs no copy: only the next epoch's episodes change it.)
pub(super) struct Pending {
    /// Complete but for the updates' statistics and their wait.
    row: EpochRow,
    episodes_seconds: f64,
    /// Weights and SGD momenta at the end of the epoch (copies).
    snapshot: Vec<(String, Tensor)>,
    step: usize,
    elapsed: f64,
}

/// One epoch's weight training: its sums and seconds (alignment target included).
struct Trained {
    sums: trainer::EpochSums,
    seconds: f64,
}

/// The policy updates' outcome and seconds, and the wait for them after training.
type Updated = Option<((Result<Option<Learned>, Diverged>, f64), f64)>;

/// The error of agent updates that diverged after epoch `epoch` of the run in `run_dir`:
/// the run stops there, its last checkpoint (the epoch before) stays in place.
fn diverged(run_dir: &std::path::Path, epoch: usize, e: Diverged) -> SearchError {
    let d = run_dir.display();
    SearchError::Job(anyhow!("agent updates of epoch {epoch}: {e} ({d}/recipe.yaml), then `rlal prune --resume {d}` continues from the last good checkpoint"))
}

/// The rewards of an epoch's episodes (`score(i, kept)`): one process scores all; the
/// ranks of a multi-rank job score every `world`-th episode each (rank r: episodes
/// r, r + world, ...) and sum the rewards, so every rank ends with all of them.
fn score_episodes(
    episodes: &[Vec<usize>],
    mut score: impl FnMut(usize, &[usize]) -> Result<f64, TrainError>,
) -> Result<Vec<f64>, SearchError> {
    let (rank, world) = crate::dist::parallel().map_or((0, 1), |w| (w.rank, w.size));
    let mut accs = vec![0.0; episodes.len()];
    for (i, kept) in episodes.iter().enumerate().skip(rank).step_by(world) {
        accs[i] = score(i, kept)?;
    }
    crate::dist::sum_f64(&mut accs)?;
    Ok(accs)
}

/// Records the statistics of a policy's update (of `seconds`) in its epoch's row.
fn set_learned(row: &mut EpochRow, learned: Option<Learned>, seconds: f64) {
    match learned {
        Some(l) => row.set_updates(&l.stats, seconds, l.env_model, l.alpha),
        None => row.update_seconds = seconds,
    }
}

impl Job<'_> {
    /// Alg. 1: the joint epochs of weight training and search.
    pub(super) fn joint(&mut self) -> Result<(), SearchError> {
        // An epoch whose agent updates run beside the next epoch's weight training.
        let mut pending: Option<Pending> = None;
        for t in self.start..self.r.training.epochs {
            pending = self.epoch(t, pending)?;
        }
        debug_assert!(pending.is_none(), "the last epoch never defers its updates");
        Ok(())
    }

    /// v_l of the best policy by current norms (Eq. 10), for the alignment penalty.
    fn alignment_target(&self) -> Result<Option<GroupLasso>, SearchError> {
        let (r, net) = (self.r, &self.net);
        match (self.inc.best(), r.search.alignment && r.search.beta > 0.0) {
            (Some(b), true) => {
                let ks = reward::keep_sets(net, &self.budget, &b.kept, r.search.criterion.p())?;
                Ok(Some(net.group_lasso_target(&reward::keep_vectors(net, &ks))))
            }
            _ => Ok(None),
        }
    }

    /// Joint epoch `t` (0-based): weight training (beside the previous epoch's deferred
    /// agent updates, which then close that epoch), then the epoch's episodes; returns
    /// this epoch when its own updates are deferred.
    fn epoch(
        &mut self,
        t: usize,
        pending: Option<Pending>,
    ) -> Result<Option<Pending>, SearchError> {
        let t0 = Instant::now();
        let align = self.alignment_target()?;
        let (trained, updated) =
            self.train_beside_updates(t, t0, align.as_ref(), pending.is_some());
        if let Some(pd) = pending {
            self.close_pending(pd, updated)?;
        }
        // The training time excludes the wait for the updates (counted as the previous epoch's search).
        let sums = trained?;
        let t1 = Instant::now();
        let mut row = EpochRow {
            epoch: t + 1,
            lr: sums.sums.lr,
            train_loss: sums.sums.loss(),
            train_acc: sums.sums.accuracy(),
            // The penalty before β (Eq. 11).
            align_loss: align.is_some().then(|| sums.sums.extra() / self.r.search.beta),
            ..Default::default()
        };
        let defer = self.search(t, &mut row)?;
        let search_secs = t1.elapsed().as_secs_f64();
        row.best_reward = self.inc.best().map(|b| b.reward);
        row.mean_reward = (!row.rewards.is_empty())
            .then(|| row.rewards.iter().sum::<f64>() / row.rewards.len() as f64);
        let r = self.r;
        if t + 1 == r.training.epochs
            || (r.training.eval_every > 0 && (t + 1) % r.training.eval_every == 0)
        {
            row.test_acc = Some(evaluate(&self.net, &self.test)?.accuracy);
        }
        row.train_seconds = sums.seconds;
        row.search_seconds = search_secs;
        let elapsed = self.elapsed0 + self.t_all.elapsed().as_secs_f64();
        if defer {
            // Metrics row and checkpoint wait for the updates; the weights of this epoch are kept aside.
            let snapshot = self
                .tr
                .tensors(&self.net)
                .into_iter()
                .map(|(n, t)| (n, tch::no_grad(|| t.detach().copy())))
                .collect();
            let step = self.tr.step;
            return Ok(Some(Pending {
                row,
                episodes_seconds: search_secs,
                snapshot,
                step,
                elapsed,
            }));
        }
        self.t_search += search_secs;
        let state = self.state(t + 1, self.tr.step, elapsed);
        let named = self.tr.tensors(&self.net);
        self.close(row, named, &state)?;
        Ok(None)
    }

    /// Closes the epoch whose updates ran beside this epoch's training (`updated`).
    fn close_pending(&mut self, pd: Pending, updated: Updated) -> Result<(), SearchError> {
        let ((st, secs), wait) = updated.ok_or_else(|| {
            anyhow!("the agent updates of epoch {} failed (thread panicked)", pd.row.epoch)
        })?;
        let st = st.map_err(|e| diverged(&self.o.run_dir, pd.row.epoch, e))?;
        let mut row = pd.row;
        set_learned(&mut row, st, secs);
        row.update_overlapped = true;
        row.search_seconds = pd.episodes_seconds + wait;
        self.t_search += row.search_seconds;
        let state = self.state(row.epoch, pd.step, pd.elapsed);
        self.close(row, pd.snapshot, &state)
    }

    /// Epoch `t`'s weight training; with `updates`, the policy's deferred updates run on
    /// their own thread meanwhile (neither reads what the other writes): the training
    /// sums with the seconds since `t0` at its end, and the updates' statistics, seconds
    /// and the wait for them after training (None when the thread panicked).
    fn train_beside_updates(
        &mut self,
        t: usize,
        t0: Instant,
        align: Option<&GroupLasso>,
        updates: bool,
    ) -> (Result<Trained, SearchError>, Updated) {
        let (r, o) = (self.r, self.o);
        let (policy, rng, tr, net, train) =
            (&mut self.policy, &mut self.rng, &mut self.tr, &mut self.net, &self.train);
        std::thread::scope(|s| {
            let handle = updates.then(|| {
                s.spawn(move || {
                    if r.training.threads > 0 {
                        tch::set_num_threads(r.training.threads as i32);
                    }
                    let tu = Instant::now();
                    let st = policy.update(rng);
                    (st, tu.elapsed().as_secs_f64())
                })
            });
            let label = format!("epoch {}/{} train", t + 1, r.training.epochs);
            let mut pen = |n: &Net| Ok(align.map(|g| g.penalty(n) * r.search.beta));
            let sums = tr
                .epoch(net, train, t, &label, o.progress, Some(&mut pen))
                .map(|sums| Trained { sums, seconds: t0.elapsed().as_secs_f64() })
                .map_err(SearchError::from);
            let tw = Instant::now();
            let updated =
                handle.and_then(|h| h.join().ok()).map(|u| (u, tw.elapsed().as_secs_f64()));
            (sums, updated)
        })
    }

    /// The search of epoch `t` (its phase decides): the policy's episodes scored on
    /// the frozen weights, incumbents re-scored, the policy's updates; true when the
    /// updates are deferred to run beside the next epoch's training.
    fn search(&mut self, t: usize, row: &mut EpochRow) -> Result<bool, SearchError> {
        let r = self.r;
        let phase = r.phase(t);
        if !phase.searching() {
            row.phase =
                if t < r.search.weights_only_epochs { "warmup".into() } else { "weights".into() };
            return Ok(false);
        }
        // The metrics' phase: the recipe's, or `search` for the baselines without search.
        row.phase = if self.policy.keeps_best() { phase.name() } else { "search" }.into();
        let (frozen, freeze) = self.freeze_and_rescore(t)?;
        // The incumbents are on this epoch's weights when the policy proposes (`local`'s centre).
        let mut ctx = Ctx {
            budget: &self.budget,
            net: Some(&self.net),
            rng: &mut self.rng,
            incumbent: self.inc.best(),
            phase,
            episodes: r.search.episodes_per_epoch,
        };
        let episodes = self.policy.propose(t, &mut ctx)?;
        let accs = self.score(t, &episodes, frozen.as_ref())?;
        self.policy.observe(t, &episodes, &accs);
        let keeps_best = self.policy.keeps_best();
        for (kept, acc) in episodes.into_iter().zip(accs) {
            row.rewards.push(acc);
            row.macs.push(self.budget.macs(&kept));
            let b = Best { reward: acc, kept, epoch: t + 1 };
            if keeps_best {
                self.inc.offer(b, r.kept_incumbents(), r.search.selection == Selection::Rescore);
            } else {
                self.inc.replace(b);
            }
        }
        row.reward_stages = Some(reward::RewardStages { freeze, ..self.rset.take_stages() });
        if !self.policy.learns(phase) {
            return Ok(false);
        }
        if r.agent.overlap.resolve(self.device) && t + 1 < r.training.epochs {
            return Ok(true);
        }
        let tu = Instant::now();
        let learned =
            self.policy.update(&mut self.rng).map_err(|e| diverged(&self.o.run_dir, t + 1, e))?;
        set_learned(row, learned, tu.elapsed().as_secs_f64());
        Ok(false)
    }

    /// Epoch `t`'s frozen weights (for the `pruned` and `ort` engines) and the seconds
    /// of freezing them; the incumbents scored again on them (`selection: rescore`),
    /// so that the episodes compete with the incumbents on the same weights.
    fn freeze_and_rescore(
        &mut self,
        t: usize,
    ) -> Result<(Option<reward::Frozen>, f64), SearchError> {
        let r = self.r;
        let tf = Instant::now();
        let frozen = super::freeze(r, &self.net, &self.budget, self.ort_ok)?;
        let freeze = tf.elapsed().as_secs_f64();
        let _ = self.rset.take_stages();
        let p = r.search.criterion.p();
        let (net, budget, rset) = (&mut self.net, &self.budget, &self.rset);
        if r.search.selection == Selection::Rescore && self.policy.keeps_best() {
            self.inc
                .rescore(t + 1, |kept| rset.reward_with(net, frozen.as_ref(), budget, kept, p))?;
        }
        Ok((frozen, freeze))
    }

    /// Epoch `t`'s rewards of `episodes` on the frozen weights `frozen`.
    fn score(
        &mut self,
        t: usize,
        episodes: &[Vec<usize>],
        frozen: Option<&reward::Frozen>,
    ) -> Result<Vec<f64>, SearchError> {
        let r = self.r;
        let p = r.search.criterion.p();
        let (net, budget, rset) = (&mut self.net, &self.budget, &self.rset);
        let (n_ep, progress) = (episodes.len(), self.o.progress);
        let mut best_seen = self.inc.best().map_or(0.0, |b| b.reward);
        let accs = score_episodes(episodes, |i, kept| {
            let acc = rset.reward_with(net, frozen, budget, kept, p)?;
            best_seen = best_seen.max(acc);
            if progress {
                crate::util::progress(format_args!(
                    "epoch {}/{} episodes {} {}/{} reward {:.2}% best {:.2}%                ",
                    t + 1,
                    r.training.epochs,
                    trainer::bar(i + 1, n_ep),
                    i + 1,
                    n_ep,
                    100.0 * acc,
                    100.0 * best_seen
                ));
            }
            Ok(acc)
        })?;
        Ok(accs)
    }
}
