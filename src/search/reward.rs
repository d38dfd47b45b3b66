//! From per-layer kept counts to channel sets, masks, rewards and the
//! alignment penalty; the non-agent baselines' widths.
use crate::agent::Budget;
use crate::data::Loader;
pub use crate::rewrite::KeepSets;
use crate::train::trainer::batch_tensors;
use crate::train::{evaluate, Net, TrainError};
use crate::validate::score::HostBatch;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Kept channel indices per agent layer's group: the `kept[l]` channels with
/// the largest current filter norm (`p` = 1 or 2), sorted by index.
pub fn keep_sets(
    net: &Net,
    budget: &Budget,
    kept: &[usize],
    p: u32,
) -> Result<KeepSets, TrainError> {
    let mut ks = KeepSets::new();
    for (l, &g) in budget.groups.iter().enumerate() {
        let norms: Vec<f64> = net.channel_norms(g, p)?.into_iter().map(f64::from).collect();
        ks.insert(g, crate::rewrite::rank::top(&norms, kept[l]));
    }
    Ok(ks)
}

/// Binary keep-vectors (the paper's v_l) of keep-sets.
pub fn keep_vectors(net: &Net, ks: &KeepSets) -> BTreeMap<usize, Vec<bool>> {
    let widths: BTreeMap<usize, usize> = net.prunable_groups().into_iter().collect();
    ks.iter()
        .map(|(&g, idx)| {
            let mut v = vec![false; widths.get(&g).copied().unwrap_or(0)];
            for &i in idx {
                v[i] = true;
            }
            (g, v)
        })
        .collect()
}

/// Where an epoch's episodes spent their time (seconds, summed over episodes).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RewardStages {
    pub episodes: usize,
    /// Images scored per episode (the reward subset).
    pub images: usize,
    /// Once per epoch: exporting the frozen weights for the narrow networks (`search.reward-engine: pruned|ort`).
    #[serde(default)]
    pub freeze: f64,
    /// Keep-sets and channel surgery of the narrow graph (or setting masks).
    pub surgery: f64,
    /// Building the narrow network (libtorch executor or ONNX Runtime session).
    pub build: f64,
    /// Adaptive BN: the train-mode forward on the recalibration images (and, for ONNX Runtime, BN folding).
    pub recal: f64,
    /// Scoring the reward subset.
    pub infer: f64,
}

impl RewardStages {
    pub fn total(&self) -> f64 {
        self.freeze + self.surgery + self.build + self.recal + self.infer
    }
}

fn timed<T>(acc: &mut f64, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    *acc += t.elapsed().as_secs_f64();
    r
}

/// A reward failure in ONNX Runtime as a training error.
fn in_ort(e: crate::validate::ValidateError) -> TrainError {
    TrainError::Graph(format!("reward in ONNX Runtime: {e}"))
}

/// How `search.reward-engine: ort` scores a narrow network (recipe `training.threads`,
/// `search.reward-ort-batch`, `search.reward-ort-pad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrtScoring {
    /// Single-threaded ONNX Runtime sessions scoring side by side.
    pub sessions: usize,
    /// Images per run.
    pub batch: usize,
    /// Widths of the scored layers are padded with zero channels to a multiple of this.
    pub pad: usize,
}

impl OrtScoring {
    /// One session, the given batch, no padding.
    pub fn serial(batch: usize) -> OrtScoring {
        OrtScoring { sessions: 1, batch, pad: 1 }
    }
}

/// The held-out reward subset. Decoded, normalised and moved to the device
/// once when it fits in [`RewardSet::CACHE_BYTES`] (every episode evaluates
/// the same images), streamed from the loader otherwise.
pub struct RewardSet {
    /// The held-out subset (a loader shares its dataset; cloning it is cheap).
    loader: Loader,
    cached: Option<Vec<(Tensor, Tensor)>>,
    /// Training images for adaptive BN (see [`RewardSet::with_recalibration`]).
    recal: Option<Tensor>,
    /// The subset as host f32 (NCHW) batches of the given size and labels, for ONNX Runtime; made on first use.
    host: std::cell::OnceCell<(usize, Vec<HostBatch>)>,
    stages: std::cell::Cell<RewardStages>,
}

impl RewardSet {
    /// Largest subset kept in memory (1 GiB of f32 pixels).
    pub const CACHE_BYTES: usize = 1 << 30;

    pub fn new(loader: &Loader, net: &Net) -> Result<RewardSet, TrainError> {
        let per: usize = loader.dataset().sample_len() * 4;
        let cached = if per * loader.num_samples() <= Self::CACHE_BYTES {
            let mut v = Vec::new();
            for b in loader.epoch(0) {
                v.push(batch_tensors(&b?, net));
            }
            Some(v)
        } else {
            None
        };
        Ok(RewardSet {
            loader: loader.clone(),
            cached,
            recal: None,
            host: std::cell::OnceCell::new(),
            stages: Default::default(),
        })
    }

    /// Adaptive BN: narrow networks re-estimate their BatchNormalization statistics on
    /// `x` (a batch of training images, NCHW on the network's device) before they are scored.
    pub fn with_recalibration(mut self, x: Option<Tensor>) -> Self {
        self.recal = x;
        self
    }

    /// The time spent per stage since the last call (which resets the counters).
    pub fn take_stages(&self) -> RewardStages {
        self.stages.take()
    }

    /// Images in the subset.
    pub fn num_samples(&self) -> usize {
        self.loader.num_samples()
    }

    /// The subset as host batches of `batch` images (the last one shorter). The first
    /// size asked for is kept (every episode of a run asks for the same).
    fn host_batches(&self, batch: usize) -> Result<std::borrow::Cow<'_, [HostBatch]>, TrainError> {
        let batch = batch.max(1);
        match self.host.get() {
            Some((b, h)) if *b == batch => Ok(std::borrow::Cow::Borrowed(h)),
            Some(_) => Ok(std::borrow::Cow::Owned(self.make_host_batches(batch)?)),
            None => {
                let v = self.make_host_batches(batch)?;
                Ok(std::borrow::Cow::Borrowed(&self.host.get_or_init(|| (batch, v)).1))
            }
        }
    }

    fn make_host_batches(&self, batch: usize) -> Result<Vec<HostBatch>, TrainError> {
        let mut v: Vec<HostBatch> = Vec::new();
        let mut push = |shape: &[usize], data: &[f32], labels: &[i64]| {
            let per: usize = shape[1..].iter().product();
            for (x, y) in data.chunks(batch * per).zip(labels.chunks(batch)) {
                let mut s = shape.to_vec();
                s[0] = y.len();
                v.push((s, x.to_vec(), y.to_vec()));
            }
        };
        match &self.cached {
            Some(batches) => {
                let xs: Vec<&Tensor> = batches.iter().map(|(x, _)| x).collect();
                let ys: Vec<&Tensor> = batches.iter().map(|(_, y)| y).collect();
                let x = Tensor::cat(&xs, 0).to_device(tch::Device::Cpu).contiguous();
                let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
                let data = Vec::<f32>::try_from(x.flatten(0, -1))
                    .map_err(|e| TrainError::Graph(format!("reward batch: {e}")))?;
                let labels = Vec::<i64>::try_from(
                    Tensor::cat(&ys, 0).to_device(tch::Device::Cpu).to_kind(Kind::Int64),
                )
                .map_err(|e| TrainError::Graph(format!("reward labels: {e}")))?;
                push(&shape, &data, &labels);
            }
            None => {
                for b in self.loader.epoch(0) {
                    let b = b?;
                    push(&b.shape, &b.data, &b.labels);
                }
            }
        }
        Ok(v)
    }

    /// Accuracy of an ONNX graph in ONNX Runtime on the subset (`how.pad` is not used here).
    pub fn accuracy_ort(&self, g: &crate::ir::Graph, how: OrtScoring) -> Result<f64, TrainError> {
        self.accuracy_ort_staged(g, how, &mut RewardStages::default())
    }

    /// Accuracy of `net` (eval mode, current masks, no gradients) on the subset.
    pub fn accuracy(&self, net: &Net) -> Result<f64, TrainError> {
        let Some(batches) = &self.cached else { return Ok(evaluate(net, &self.loader)?.accuracy) };
        let (mut right, mut n) = (0i64, 0i64);
        tch::no_grad(|| -> Result<(), TrainError> {
            for (x, y) in batches {
                let logits = net.forward_t(x, false)?;
                right += logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64).int64_value(&[]);
                n += y.size()[0];
            }
            Ok(())
        })?;
        Ok(right as f64 / n.max(1) as f64)
    }

    /// Reward of an episode: accuracy of the network keeping the `kept[l]`
    /// channels of largest filter norm; on the physically narrower network
    /// when `frozen` is given, else with the other channels masked.
    pub fn reward_with(
        &self,
        net: &mut Net,
        frozen: Option<&Frozen>,
        budget: &Budget,
        kept: &[usize],
        p: u32,
    ) -> Result<f64, TrainError> {
        let mut st = self.stages.get();
        st.episodes += 1;
        st.images = self.num_samples();
        let r = self.reward_staged(net, frozen, budget, kept, p, &mut st);
        self.stages.set(st);
        r
    }

    fn reward_staged(
        &self,
        net: &mut Net,
        frozen: Option<&Frozen>,
        budget: &Budget,
        kept: &[usize],
        p: u32,
        st: &mut RewardStages,
    ) -> Result<f64, TrainError> {
        let Some(f) = frozen else {
            let ks = timed(&mut st.surgery, || keep_sets(net, budget, kept, p))?;
            timed(&mut st.surgery, || net.set_masks(&keep_vectors(net, &ks)))?;
            // Adaptive BN on the masked network: the same statistics as the narrow
            // network's (removed channels are zero downstream of their mask), with the
            // training statistics saved and put back after scoring.
            let saved = match &self.recal {
                Some(x) => match timed(&mut st.recal, || recalibrate_masked(net, x)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        net.clear_masks();
                        return Err(e);
                    }
                },
                None => None,
            };
            let r = timed(&mut st.infer, || self.accuracy(net));
            if let Some(saved) = saved {
                timed(&mut st.recal, || restore_bn_stats(net, saved));
            }
            net.clear_masks();
            return r;
        };
        let (g, a) = match f.ort {
            Some(how) => timed(&mut st.surgery, || f.narrow_graph_padded(kept, how.pad))?,
            None => timed(&mut st.surgery, || f.narrow_graph(kept))?,
        };
        match (&self.recal, f.ort) {
            (None, Some(how)) => self.accuracy_ort_staged(&g, how, st),
            (None, None) => {
                let narrow = timed(&mut st.build, || Net::new(&g, &a, net.device()))?;
                timed(&mut st.infer, || self.accuracy(&narrow))
            }
            (Some(x), ort) => {
                let narrow = timed(&mut st.build, || Frozen::for_recalibration(g, &a, x.device()))?;
                timed(&mut st.recal, || Frozen::recalibrate(&narrow, x))?;
                match ort {
                    Some(how) => {
                        let g = timed(&mut st.recal, || -> Result<_, TrainError> {
                            let mut g = narrow.export()?;
                            crate::ir::bn::fold_bn(&mut g);
                            Ok(g)
                        })?;
                        self.accuracy_ort_staged(&g, how, st)
                    }
                    None => timed(&mut st.infer, || self.accuracy(&narrow)),
                }
            }
        }
    }

    fn accuracy_ort_staged(
        &self,
        g: &crate::ir::Graph,
        how: OrtScoring,
        st: &mut RewardStages,
    ) -> Result<f64, TrainError> {
        let batches = self.host_batches(how.batch)?;
        let bytes = timed(&mut st.build, || crate::onnx::to_bytes(g));
        let t = std::time::Instant::now();
        let (acc, build) =
            crate::validate::score::accuracy(&bytes, how.sessions, &batches).map_err(in_ort)?;
        let wall = t.elapsed().as_secs_f64();
        st.build += build;
        st.infer += (wall - build).max(0.0);
        Ok(acc)
    }

    /// Reward of an episode: accuracy of the network with the channels of
    /// `kept` (by current filter norm) masked; the masks are cleared afterwards.
    pub fn reward(
        &self,
        net: &mut Net,
        budget: &Budget,
        kept: &[usize],
        p: u32,
    ) -> Result<f64, TrainError> {
        self.reward_with(net, None, budget, kept, p)
    }
}

/// One train-mode forward of the (masked) `net` on `x` without gradients, with BN
/// momentum 0: the running statistics become `x`'s. Returns copies of the previous
/// statistics (in [`Net::bn_running_stats`] order) to restore afterwards.
fn recalibrate_masked(net: &mut Net, x: &Tensor) -> Result<Vec<Tensor>, TrainError> {
    let saved: Vec<Tensor> =
        tch::no_grad(|| net.bn_running_stats().iter().map(|t| t.copy()).collect());
    net.set_bn_momentum(Some(0.0));
    let r = tch::no_grad(|| net.forward_t(x, true));
    net.set_bn_momentum(None);
    let _batch_stats = r?;
    match finite_bn_stats(net) {
        Ok(()) => Ok(saved),
        Err(e) => {
            restore_bn_stats(net, saved);
            Err(e)
        }
    }
}

/// Ok when the BatchNormalization statistics a re-calibration estimated are finite.
fn finite_bn_stats(net: &Net) -> Result<(), TrainError> {
    match net.bn_running_stats().iter().all(crate::train::all_finite) {
        true => Ok(()),
        false => Err(TrainError::Graph(
            "BN re-calibration: the re-estimated BatchNormalization statistics are not finite (the weights they were measured on diverged); lower `training.lr` in the recipe".into(),
        )),
    }
}

/// Puts back the statistics [`recalibrate_masked`] saved.
fn restore_bn_stats(net: &Net, saved: Vec<Tensor>) {
    tch::no_grad(|| {
        for (t, s) in net.bn_running_stats().into_iter().zip(saved) {
            t.shallow_clone().copy_(&s);
        }
    })
}

/// The frozen weights of one epoch's episodes, for rewards computed on
/// physically narrower networks (`search.reward-engine: pruned`): the exported graph
/// with BN folded (eval semantics), its analysis, the agent layers' groups in
/// it, and every layer's filter norms (weights do not change during episodes).
pub struct Frozen {
    graph: crate::ir::Graph,
    analysis: crate::analysis::Analysis,
    /// Per agent layer: group id in `analysis`.
    groups: Vec<usize>,
    norms: Vec<Vec<f64>>,
    input_shape: Option<Vec<usize>>,
    /// Evaluate in ONNX Runtime, this way (`search.reward-engine: ort`).
    pub ort: Option<OrtScoring>,
}

impl Frozen {
    /// `keep_bn`: keep the BatchNormalization nodes (for adaptive BN), else fold them.
    pub fn new(
        net: &Net,
        budget: &Budget,
        p: u32,
        input_shape: Option<&[usize]>,
        keep_bn: bool,
    ) -> Result<Frozen, TrainError> {
        let mut graph = net.export()?;
        if !keep_bn {
            crate::ir::bn::fold_bn(&mut graph);
        }
        let facts = crate::ir::infer::infer(&graph, input_shape).map_err(|e| {
            TrainError::Graph(format!("shape inference of the BN-folded graph: {e}"))
        })?;
        let analysis = crate::analysis::Analysis::new(&graph, facts, Vec::new());
        let mut groups = Vec::new();
        for l in &budget.layers {
            let m = analysis
                .layers
                .iter()
                .find(|x| x.name == l.name && x.channels == l.channels)
                .ok_or_else(|| {
                TrainError::Graph(format!("layer '{}' is not prunable once BN is folded", l.name))
            })?;
            groups.push(m.group);
        }
        let norms = budget
            .groups
            .iter()
            .map(|&g| Ok(net.channel_norms(g, p)?.into_iter().map(f64::from).collect()))
            .collect::<Result<_, TrainError>>()?;
        Ok(Frozen {
            graph,
            analysis,
            groups,
            norms,
            input_shape: input_shape.map(<[usize]>::to_vec),
            ort: None,
        })
    }

    /// The graph with only the `kept[l]` strongest channels of each layer, and its analysis.
    pub fn narrow_graph(
        &self,
        kept: &[usize],
    ) -> Result<(crate::ir::Graph, crate::analysis::Analysis), TrainError> {
        let ks: KeepSets = self
            .groups
            .iter()
            .zip(&self.norms)
            .zip(kept)
            .map(|((&g, n), &k)| (g, crate::rewrite::rank::top(n, k)))
            .collect();
        let pr = crate::rewrite::surgery::prune(
            &self.graph,
            &self.analysis,
            &ks,
            self.input_shape.as_deref(),
        )
        .map_err(|e| TrainError::Graph(format!("surgery for the reward: {e}")))?;
        Ok((pr.graph, pr.analysis))
    }

    /// [`Frozen::narrow_graph`] with each layer's width rounded up to a multiple of
    /// `pad` (at most its full width) by keeping the next-strongest channels with
    /// every parameter that follows them set to zero: producer filters and biases,
    /// BN scale, shift and statistics, depthwise filters, and the consumers' input
    /// weights. The added channels contribute nothing to any kept channel (their
    /// consumers' weights are zero, whatever their activation computes), so logits,
    /// and adaptive-BN statistics of the kept channels, are the unpadded network's.
    pub fn narrow_graph_padded(
        &self,
        kept: &[usize],
        pad: usize,
    ) -> Result<(crate::ir::Graph, crate::analysis::Analysis), TrainError> {
        let pad = pad.max(1);
        let mut zeroed: Option<crate::ir::Graph> = None;
        let mut ks = KeepSets::new();
        for ((&g, n), &k) in self.groups.iter().zip(&self.norms).zip(kept) {
            let real = crate::rewrite::rank::top(n, k);
            let wide_k = k.div_ceil(pad).saturating_mul(pad).min(n.len()).max(k);
            if wide_k == k {
                ks.insert(g, real);
                continue;
            }
            let wide = crate::rewrite::rank::top(n, wide_k);
            let extra: Vec<usize> =
                wide.iter().copied().filter(|i| real.binary_search(i).is_err()).collect();
            if extra.len() != wide_k - k {
                return Err(TrainError::Graph(format!("padding group {g}: the {wide_k} strongest channels do not contain the {k} strongest")));
            }
            let graph = zeroed.get_or_insert_with(|| self.graph.clone());
            if crate::rewrite::surgery::zero_group_channels(graph, &self.analysis.groups[g], &extra)
            {
                ks.insert(g, wide);
            } else {
                ks.insert(g, real);
            }
        }
        let src = zeroed.as_ref().unwrap_or(&self.graph);
        let pr =
            crate::rewrite::surgery::prune(src, &self.analysis, &ks, self.input_shape.as_deref())
                .map_err(|e| TrainError::Graph(format!("surgery for the reward: {e}")))?;
        Ok((pr.graph, pr.analysis))
    }

    /// The network with only the `kept[l]` strongest channels of each layer, as a new (narrower) [`Net`].
    pub fn narrow(&self, kept: &[usize], device: tch::Device) -> Result<Net, TrainError> {
        let (g, a) = self.narrow_graph(kept)?;
        Net::new(&g, &a, device)
    }

    /// [`Frozen::narrow`] with its BatchNormalization statistics re-estimated on `x`:
    /// one train-mode forward without gradients, ONNX momentum 0 (running = batch statistics).
    pub fn narrow_recalibrated(&self, kept: &[usize], x: &Tensor) -> Result<Net, TrainError> {
        let (g, a) = self.narrow_graph(kept)?;
        let net = Frozen::for_recalibration(g, &a, x.device())?;
        Frozen::recalibrate(&net, x)?;
        Ok(net)
    }

    /// A network of `g` whose BatchNormalization nodes take the statistics of the next train-mode batch (momentum 0).
    fn for_recalibration(
        mut g: crate::ir::Graph,
        a: &crate::analysis::Analysis,
        device: tch::Device,
    ) -> Result<Net, TrainError> {
        for n in g.nodes.iter_mut().filter(|n| crate::ir::ops::is(n, |op| op.is_batch_norm())) {
            n.set_attr("momentum", crate::ir::Attr::Float(0.0));
        }
        Net::new(&g, a, device)
    }

    /// One train-mode forward without gradients on `x`: the BN running statistics become `x`'s.
    fn recalibrate(net: &Net, x: &Tensor) -> Result<(), TrainError> {
        let _batch_stats = tch::no_grad(|| net.forward_t(x, true))?;
        finite_bn_stats(net)
    }
}

/// Uniform baseline: the largest common keep fraction within the budget, each
/// width rounded down to an allowed one ([`Budget::allowed`]: a multiple of
/// [`Budget::multiple`] or the full width).
pub fn uniform_kept(budget: &Budget) -> Vec<usize> {
    let m = budget.multiple.max(1);
    let at = |f: f64| -> Vec<usize> {
        budget
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let k = ((layer.channels as f64 * f).floor() as usize)
                    .clamp(budget.min_width(l), layer.channels);
                if k == layer.channels {
                    k
                } else {
                    (k / m * m).max(budget.min_width(l))
                }
            })
            .collect()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if budget.fits(&at(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut kept = at(lo);
    // Top up one allowed step per layer per pass while it still fits (floor granularity), so the widths stay even.
    loop {
        let mut grew = false;
        for l in 0..kept.len() {
            if kept[l] < budget.layers[l].channels {
                let before = kept[l];
                kept[l] = budget.next_allowed(l, before);
                if budget.fits(&kept) {
                    grew = true;
                } else {
                    kept[l] = before;
                }
            }
        }
        if !grew {
            break;
        }
    }
    kept
}

/// Global-threshold baseline: channels ranked across layers by their norm
/// divided by the layer's mean norm; the weakest removed (respecting each
/// layer's minimum width) until the MACs fit the target; with
/// [`Budget::multiple`] m > 1 a layer steps down to its next allowed width.
pub fn l1_global_kept(net: &Net, budget: &Budget, p: u32) -> Result<Vec<usize>, TrainError> {
    let mut all: Vec<(f64, usize)> = Vec::new();
    for (l, &g) in budget.groups.iter().enumerate() {
        let n = net.channel_norms(g, p)?;
        let mean = (n.iter().map(|&x| x as f64).sum::<f64>() / n.len().max(1) as f64).max(1e-12);
        all.extend(n.iter().map(|&x| (x as f64 / mean, l)));
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut kept: Vec<usize> = budget.layers.iter().map(|l| l.channels).collect();
    for (_, l) in all {
        if budget.fits(&kept) {
            break;
        }
        if kept[l] > budget.min_width(l) {
            kept[l] = budget.prev_allowed(l, kept[l]);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Loader, LoaderConfig, Normalize, Transform};
    use crate::rng::Rng;

    /// `model` (under the crate root) with BatchNormalization inserted where a conv lacks it.
    fn import_with_bn(model: &str) -> (crate::ir::Graph, crate::analysis::Analysis) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(model);
        let (mut g, mut an) = crate::analysis::import(&path, &Default::default()).unwrap();
        crate::train::setup::apply_insert_bn(
            &mut g,
            &mut an,
            crate::train::recipe::InsertBn::Auto,
            None,
        )
        .unwrap();
        (g, an)
    }

    /// Non-trivial parameters and BN statistics, as after training: every variable whose
    /// name contains one of `names` becomes |t| + 0.5 · U(0, 1) (seeded with `seed`).
    fn perturb(net: &Net, seed: i64, names: &[&str]) {
        tch::manual_seed(seed);
        for (n, mut t) in net.var_store().variables() {
            if names.iter().any(|s| n.contains(s)) {
                tch::no_grad(|| t.copy_(&(t.abs() + 0.5 * tch::Tensor::rand_like(&t))));
            }
        }
    }

    /// An eval loader over `n` in-memory `c`×`hw`×`hw` images in order, batches of `batch`,
    /// normalised with one mean and std for every channel.
    fn eval_loader(n: usize, c: usize, hw: usize, (mean, std): (f32, f32), batch: usize) -> Loader {
        let norm = Normalize { scale: 1.0 / 255.0, mean: vec![mean; c], std: vec![std; c] };
        let cfg = LoaderConfig {
            batch_size: batch,
            shuffle: false,
            drop_last: false,
            seed: 0,
            workers: 0,
            prefetch: 1,
        };
        let ds = crate::data::testutil::mem(n, c, hw, hw);
        Loader::new(ds, (0..n).collect(), Transform::eval(norm), cfg).unwrap()
    }

    /// A random policy's widths within the budget.
    fn random_kept(budget: &Budget, rng: &mut Rng) -> Vec<usize> {
        let mut kept = Vec::new();
        for _ in 0..budget.layers.len() {
            kept.push(budget.apply(&kept, rng.uniform_f32()));
        }
        kept
    }

    /// The logits of `g` in ONNX Runtime (one session) on the first host batch of `batch` images.
    fn ort_logits(g: &crate::ir::Graph, rs: &RewardSet, batch: usize) -> Vec<f32> {
        let hb = rs.host_batches(batch).unwrap();
        let (hs, hx, _) = &hb[0];
        let mut m = crate::validate::open_ort(&crate::onnx::to_bytes(g), 1).unwrap();
        m.run(hs, hx.clone()).unwrap().remove(0).1
    }

    /// Max |a - b| over two equally long slices.
    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    }

    #[test]
    fn uniform_widths_honour_the_channel_multiple() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["graphs/resnet56_cifar.onnx", "graphs/mobilenetv2_cifar.onnx"] {
            let (_, an) = crate::analysis::import(&path.join(file), &Default::default()).unwrap();
            for m in [1, 4, 8] {
                let mut b = Budget::new(an.cost.clone(), an.layers.clone(), 0.5, 0.9).unwrap();
                b.set_multiple(m).unwrap();
                let kept = uniform_kept(&b);
                assert!(b.fits(&kept), "{file} m={m}");
                for (l, &k) in kept.iter().enumerate() {
                    let c = b.layers[l].channels;
                    assert!(
                        k == c || (k % m == 0 && k >= b.min_keep[l]),
                        "{file} m={m} layer {l}: {k} of {c}"
                    );
                    if k < c {
                        let mut more = kept.clone();
                        more[l] = b.next_allowed(l, k);
                        assert!(!b.fits(&more), "{file} m={m} layer {l}: one more step still fits");
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_and_masked_rewards_agree() {
        let (g, an) = import_with_bn("graphs/resnet20_mnist.onnx");
        let mut net = Net::new(&g, &an, tch::Device::Cpu).unwrap();
        // Non-trivial BN statistics, as after training.
        perturb(&net, 5, &["running_var", "scale", "weight"]);
        let budget = Budget::new(an.cost.clone(), an.layers.clone(), 0.5, 0.9).unwrap();
        let loader = eval_loader(96, 1, 28, (0.13, 0.31), 40);
        let rs = RewardSet::new(&loader, &net).unwrap();
        let frozen = Frozen::new(&net, &budget, 1, None, false).unwrap();
        let mut in_ort = Frozen::new(&net, &budget, 1, None, false).unwrap();
        in_ort.ort = Some(OrtScoring::serial(40));
        let mut rng = Rng::new(1);
        for _ in 0..3 {
            let kept = random_kept(&budget, &mut rng);
            let narrow = frozen.narrow(&kept, tch::Device::Cpu).unwrap();
            let ks = keep_sets(&net, &budget, &kept, 1).unwrap();
            net.set_masks(&keep_vectors(&net, &ks)).unwrap();
            let (x, _) = &rs.cached.as_ref().unwrap()[0];
            let (a, b) = tch::no_grad(|| {
                (net.forward_t(x, false).unwrap(), narrow.forward_t(x, false).unwrap())
            });
            net.clear_masks();
            let scale = a.abs().max().double_value(&[]).max(1.0);
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(
                diff <= 1e-4 * scale,
                "narrow vs masked logits differ by {diff} (scale {scale})"
            );
            let (m, n) = (
                rs.reward(&mut net, &budget, &kept, 1).unwrap(),
                rs.reward_with(&mut net, Some(&frozen), &budget, &kept, 1).unwrap(),
            );
            assert!((m - n).abs() <= 1.0 / 96.0 + 1e-12, "masked {m} vs narrow {n}");
            // The narrow graph in ONNX Runtime computes the same logits as in libtorch.
            let lo = ort_logits(&frozen.narrow_graph(&kept).unwrap().0, &rs, 40);
            let lt = Vec::<f32>::try_from(
                tch::no_grad(|| narrow.forward_t(x, false).unwrap()).flatten(0, -1),
            )
            .unwrap();
            let d = max_abs_diff(&lo, &lt);
            assert!(
                lo.len() == lt.len() && (d as f64) <= 1e-4 * scale,
                "ONNX Runtime vs libtorch logits differ by {d}"
            );
            let o = rs.reward_with(&mut net, Some(&in_ort), &budget, &kept, 1).unwrap();
            assert!((o - n).abs() <= 1.0 / 96.0 + 1e-12, "ONNX Runtime {o} vs libtorch {n}");
        }
    }

    #[test]
    fn adaptive_bn_sets_the_statistics_of_the_narrow_network() {
        let (g, an) = import_with_bn("graphs/resnet20_mnist.onnx");
        let mut net = Net::new(&g, &an, tch::Device::Cpu).unwrap();
        let budget = Budget::new(an.cost.clone(), an.layers.clone(), 0.5, 0.9).unwrap();
        let loader = eval_loader(64, 1, 28, (0.13, 0.31), 64);
        let rs = RewardSet::new(&loader, &net).unwrap();
        let x = rs.cached.as_ref().unwrap()[0].0.shallow_clone();
        let rs = rs.with_recalibration(Some(x.shallow_clone()));
        let frozen = Frozen::new(&net, &budget, 1, None, true).unwrap();
        let kept: Vec<usize> = budget.layers.iter().map(|l| l.channels / 2).collect();
        let narrow = frozen.narrow_recalibrated(&kept, &x).unwrap();
        // Eval mode with the re-estimated statistics = train mode (batch statistics) on the same
        // images, up to the unbiased/biased variance factor 64/63.
        let (e, t) = tch::no_grad(|| {
            (narrow.forward_t(&x, false).unwrap(), narrow.forward_t(&x, true).unwrap())
        });
        let scale = t.abs().max().double_value(&[]).max(1.0);
        let d = (&e - &t).abs().max().double_value(&[]);
        assert!(d <= 0.05 * scale, "eval vs batch-statistics logits differ by {d} (scale {scale})");
        // Before recalibration (identity BN statistics) the same narrow net computes something else.
        let stale = tch::no_grad(|| {
            frozen.narrow(&kept, tch::Device::Cpu).unwrap().forward_t(&x, false).unwrap()
        });
        assert!((&stale - &t).abs().max().double_value(&[]) > 10.0 * d.max(1e-6));
        let _ = rs.take_stages();
        // libtorch and ONNX Runtime score the recalibrated network alike.
        let mut in_ort = Frozen::new(&net, &budget, 1, None, true).unwrap();
        in_ort.ort = Some(OrtScoring::serial(64));
        let (a, b) = (
            rs.reward_with(&mut net, Some(&frozen), &budget, &kept, 1).unwrap(),
            rs.reward_with(&mut net, Some(&in_ort), &budget, &kept, 1).unwrap(),
        );
        assert!((a - b).abs() <= 1.0 / 64.0 + 1e-12, "libtorch {a} vs ONNX Runtime {b}");
        // The masked full network with adaptive BN computes the narrow network's logits
        // and reward, and gets its training statistics back afterwards.
        let before: Vec<Tensor> = net.bn_running_stats().iter().map(|t| t.copy()).collect();
        assert_eq!(before.len(), 2 * 19);
        let ks = keep_sets(&net, &budget, &kept, 1).unwrap();
        net.set_masks(&keep_vectors(&net, &ks)).unwrap();
        let saved = recalibrate_masked(&mut net, &x).unwrap();
        let lm = tch::no_grad(|| net.forward_t(&x, false).unwrap());
        let d = (&lm - &e).abs().max().double_value(&[]);
        assert!(
            d <= 1e-4 * scale,
            "masked vs narrow recalibrated logits differ by {d} (scale {scale})"
        );
        restore_bn_stats(&net, saved);
        net.clear_masks();
        let m = rs.reward(&mut net, &budget, &kept, 1).unwrap();
        assert!((m - a).abs() <= 1.0 / 64.0 + 1e-12, "masked {m} vs narrow {a}");
        for (t, b) in net.bn_running_stats().iter().zip(&before) {
            assert!(t.equal(b), "training statistics restored");
        }
        // The three episodes were timed by stage.
        let st = rs.take_stages();
        assert_eq!((st.episodes, st.images), (3, 64));
        assert!(st.surgery > 0.0 && st.build > 0.0 && st.recal > 0.0 && st.infer > 0.0, "{st:?}");
        assert_eq!(rs.take_stages(), RewardStages::default());
    }

    /// Padding the scored layers with zero channels (`search.reward-ort-pad`) changes no
    /// logit and no adaptive-BN statistic of the kept channels, in libtorch and in
    /// ONNX Runtime, for ResNet-20 (ReLU) and MobileNetV2 (depthwise, ReLU6); the
    /// padded widths are multiples of the pad (or full); side-by-side sessions score
    /// exactly what one session scores.
    #[test]
    fn padded_narrow_networks_compute_the_unpadded_logits() {
        for (model, c, hw) in [
            ("graphs/resnet20_mnist.onnx", 1usize, 28usize),
            ("graphs/mobilenetv2_cifar.onnx", 3, 32),
        ] {
            let (g, an) = import_with_bn(model);
            let net = Net::new(&g, &an, tch::Device::Cpu).unwrap();
            perturb(&net, 7, &["running_var", "scale", "weight", "bias"]);
            let budget = Budget::new(an.cost.clone(), an.layers.clone(), 0.5, 0.9).unwrap();
            let loader = eval_loader(24, c, hw, (0.4, 0.3), 24);
            let rs = RewardSet::new(&loader, &net).unwrap();
            let mut rng = Rng::new(3);
            for keep_bn in [false, true] {
                let frozen = Frozen::new(&net, &budget, 1, None, keep_bn).unwrap();
                let kept = random_kept(&budget, &mut rng);
                assert_padding_keeps_logits(model, &rs, &frozen, &budget, &kept, keep_bn);
            }
            assert_side_by_side_sessions_agree(model, &net, &budget, &loader);
        }
    }

    /// The network of narrow graph `g` (its BN statistics re-estimated on `x` with
    /// `keep_bn`): its logits on `x`, and its export with BN folded.
    fn narrow_logits(
        g: crate::ir::Graph,
        a: &crate::analysis::Analysis,
        x: &Tensor,
        keep_bn: bool,
    ) -> (Tensor, crate::ir::Graph) {
        let n = if keep_bn {
            Frozen::for_recalibration(g, a, tch::Device::Cpu).unwrap()
        } else {
            Net::new(&g, a, tch::Device::Cpu).unwrap()
        };
        if keep_bn {
            Frozen::recalibrate(&n, x).unwrap();
        }
        let mut e = n.export().unwrap();
        crate::ir::bn::fold_bn(&mut e);
        (tch::no_grad(|| n.forward_t(x, false).unwrap()), e)
    }

    /// `kept` padded to multiples of 4 and of 8: the padded widths, and the unpadded
    /// logits in libtorch and in ONNX Runtime.
    fn assert_padding_keeps_logits(
        model: &str,
        rs: &RewardSet,
        frozen: &Frozen,
        budget: &Budget,
        kept: &[usize],
        keep_bn: bool,
    ) {
        let x = rs.cached.as_ref().unwrap()[0].0.shallow_clone();
        let (g0, a0) = frozen.narrow_graph(kept).unwrap();
        let (l0, e0) = narrow_logits(g0, &a0, &x, keep_bn);
        let scale = l0.abs().max().double_value(&[]).max(1.0);
        for pad in [4usize, 8] {
            let (gp, ap) = frozen.narrow_graph_padded(kept, pad).unwrap();
            assert_padded_widths(model, budget, kept, &ap, pad);
            let (lp, ep) = narrow_logits(gp, &ap, &x, keep_bn);
            let d = (&lp - &l0).abs().max().double_value(&[]);
            assert!(
                d <= 1e-5 * scale,
                "{model} pad {pad} (BN kept: {keep_bn}): logits differ by {d} (scale {scale})"
            );
            // The same in ONNX Runtime, one session or two side by side.
            let d = max_abs_diff(&ort_logits(&e0, rs, 24), &ort_logits(&ep, rs, 24));
            assert!(
                (d as f64) <= 1e-5 * scale,
                "{model} pad {pad}: ONNX Runtime logits differ by {d}"
            );
        }
    }

    /// Each layer of the padded network `ap` has `kept` rounded up to a multiple of `pad`
    /// (at most the full width), and at least one layer was padded.
    fn assert_padded_widths(
        model: &str,
        budget: &Budget,
        kept: &[usize],
        ap: &crate::analysis::Analysis,
        pad: usize,
    ) {
        let mut padded_some = false;
        for (l, &k) in kept.iter().enumerate() {
            let full = budget.layers[l].channels;
            let w = ap
                .layers
                .iter()
                .find(|x| x.name == budget.layers[l].name)
                .map(|x| x.channels)
                .unwrap();
            assert_eq!(
                w,
                k.div_ceil(pad).saturating_mul(pad).min(full),
                "{model} layer {l}: kept {k} of {full}, pad {pad}"
            );
            padded_some |= w > k;
        }
        assert!(padded_some, "{model}: nothing to pad in {kept:?}");
    }

    /// Side-by-side sessions: the same batches, the same accuracy, exactly.
    fn assert_side_by_side_sessions_agree(
        model: &str,
        net: &Net,
        budget: &Budget,
        loader: &Loader,
    ) {
        let frozen = Frozen::new(net, budget, 1, None, false).unwrap();
        let (g1, _) = frozen
            .narrow_graph_padded(
                &vec![1; budget.layers.len()]
                    .iter()
                    .zip(&budget.min_keep)
                    .map(|(a, b)| *a.max(b))
                    .collect::<Vec<_>>(),
                4,
            )
            .unwrap();
        let rs7 = RewardSet::new(loader, net).unwrap();
        let one = rs7.accuracy_ort(&g1, OrtScoring { sessions: 1, batch: 7, pad: 4 }).unwrap();
        let two = rs7.accuracy_ort(&g1, OrtScoring { sessions: 2, batch: 7, pad: 4 }).unwrap();
        let three = rs7.accuracy_ort(&g1, OrtScoring { sessions: 3, batch: 7, pad: 4 }).unwrap();
        assert_eq!((one, one), (two, three), "{model}");
        assert_eq!(
            rs7.host_batches(7).unwrap().iter().map(|b| b.2.len()).collect::<Vec<_>>(),
            vec![7, 7, 7, 3]
        );
    }
}
