//! Channel masks, per-group weight slices and the group-lasso penalty.
//!
//! A mask is a 0/1 vector per prunable group (indexed by group channel). It is
//! applied by multiplying the input of each of the group's consumer nodes
//! (conv/Gemm inputs reducing over the group's channels), i.e. after the last
//! per-channel op. Because a prunable group's channels reach nothing but
//! consumers through per-channel ops, a zero there is exactly the removal of
//! the channel (including across depthwise convs and BN shifts). Switching
//! masks only rebuilds a few small tensors.
use super::{Net, TrainError};
use crate::analysis::Analysis;
use crate::ir::{Graph, NodeId, ValueId};
use std::collections::{BTreeMap, HashMap};
use tch::{Kind, Tensor};

/// Where a group's channels enter a consumer.
#[derive(Clone, Debug)]
struct ConsumerSlot {
    node: NodeId,
    slot: usize,
    /// Channel count (axis 1) and rank of the value at that slot.
    width: usize,
    rank: usize,
    /// Per group channel, the indices in that value's axis 1.
    idx: Vec<Vec<usize>>,
}

/// A parameter axis following a group's channels (for norms and the penalty).
#[derive(Clone, Debug)]
pub struct GroupParam {
    /// ONNX initializer name.
    pub name: String,
    pub axis: usize,
    /// Per group channel, indices along `axis`.
    pub idx: Vec<Vec<usize>>,
    /// Whether it belongs to a producer or per-channel node (not a consumer).
    pub producing: bool,
}

#[derive(Default)]
pub(super) struct MaskState {
    slots: BTreeMap<usize, Vec<ConsumerSlot>>,
    params: BTreeMap<usize, Vec<GroupParam>>,
    channels: BTreeMap<usize, usize>,
    /// Current keep-vectors of masked groups.
    keep: BTreeMap<usize, Vec<bool>>,
    /// Multiplicative mask per consumer node: (input slot, tensor).
    active: HashMap<NodeId, (usize, Tensor)>,
}

impl MaskState {
    pub(super) fn build(g: &Graph, a: &Analysis) -> Result<MaskState, TrainError> {
        let mut s = MaskState::default();
        for gr in a.groups.iter().filter(|gr| gr.prunable) {
            let members: HashMap<ValueId, &Vec<Vec<usize>>> =
                gr.members.iter().map(|(v, i)| (*v, i)).collect();
            let mut slots = Vec::new();
            for &n in &gr.consumers {
                for (slot, v) in g.nodes[n].inputs.iter().enumerate() {
                    let Some(v) = v else { continue };
                    let Some(idx) = members.get(v) else { continue };
                    if g.values[*v].init.is_some() {
                        continue;
                    }
                    let f = a.facts[*v].as_ref().ok_or_else(|| {
                        TrainError::Graph(format!("no shape for '{}'", g.values[*v].name))
                    })?;
                    let width = f.dim(1).ok_or_else(|| {
                        TrainError::Graph(format!(
                            "'{}' has no fixed channel axis",
                            g.values[*v].name
                        ))
                    })?;
                    slots.push(ConsumerSlot {
                        node: n,
                        slot,
                        width,
                        rank: f.rank(),
                        idx: (*idx).clone(),
                    });
                }
            }
            let params = gr
                .params
                .iter()
                .filter_map(|p| {
                    let idx = members.get(&p.follows)?;
                    Some(GroupParam {
                        name: g.values[p.value].name.clone(),
                        axis: p.axis,
                        idx: (*idx).clone(),
                        producing: !gr.consumers.contains(&p.node),
                    })
                })
                .collect();
            s.slots.insert(gr.id, slots);
            s.params.insert(gr.id, params);
            s.channels.insert(gr.id, gr.channels);
        }
        Ok(s)
    }

    pub(super) fn input_mask(&self, node: NodeId) -> Option<(usize, &Tensor)> {
        self.active.get(&node).map(|(s, t)| (*s, t))
    }
}

impl Net {
    /// Ids of the prunable groups, with their channel counts.
    pub fn prunable_groups(&self) -> Vec<(usize, usize)> {
        self.masks.channels.iter().map(|(&g, &c)| (g, c)).collect()
    }

    /// Sets the keep-vectors (true = keep) of some groups; other groups are unmasked.
    pub fn set_masks(&mut self, keep: &BTreeMap<usize, Vec<bool>>) -> Result<(), TrainError> {
        for (g, k) in keep {
            let c =
                *self.masks.channels.get(g).ok_or_else(|| {
                    TrainError::Mask(format!("group {g} is not a prunable group"))
                })?;
            if k.len() != c {
                return Err(TrainError::Mask(format!(
                    "the mask of group {g} has {} entries for {c} channels",
                    k.len()
                )));
            }
        }
        let mut per_node: HashMap<NodeId, (usize, Vec<f32>, usize)> = HashMap::new();
        for (g, k) in keep {
            for s in &self.masks.slots[g] {
                let e =
                    per_node.entry(s.node).or_insert_with(|| (s.slot, vec![1.0; s.width], s.rank));
                for (c, &kept) in k.iter().enumerate() {
                    if !kept {
                        for &i in &s.idx[c] {
                            e.1[i] = 0.0;
                        }
                    }
                }
            }
        }
        self.masks.active = per_node
            .into_iter()
            .map(|(n, (slot, m, rank))| {
                let mut shape = vec![1i64; rank.max(2)];
                shape[1] = m.len() as i64;
                (n, (slot, Tensor::from_slice(&m).reshape(&shape).to_device(self.device())))
            })
            .collect();
        self.masks.keep = keep.clone();
        Ok(())
    }

    /// Removes every mask.
    pub fn clear_masks(&mut self) {
        self.masks.active.clear();
        self.masks.keep.clear();
    }

    /// Current keep-vectors.
    pub fn masks(&self) -> &BTreeMap<usize, Vec<bool>> {
        &self.masks.keep
    }

    /// Parameter slices following group `g` (producers, per-channel ops and consumers).
    pub fn group_params(&self, g: usize) -> &[GroupParam] {
        self.masks.params.get(&g).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Per-channel L1 (`p = 1`) or L2 (`p = 2`) norm of the group's producing weights
    /// (conv/Gemm weights of producers and per-channel convs), for ranking channels.
    pub fn channel_norms(&self, g: usize, p: u32) -> Result<Vec<f32>, TrainError> {
        let c = *self
            .masks
            .channels
            .get(&g)
            .ok_or_else(|| TrainError::Mask(format!("group {g} is not a prunable group")))?;
        let mut acc = vec![0f64; c];
        tch::no_grad(|| -> Result<(), TrainError> {
            for gp in self.group_params(g).iter().filter(|gp| gp.producing) {
                let Some(t) = self.param(&gp.name) else { continue };
                if t.dim() < 2 {
                    continue; // biases and BN vectors do not rank filters
                }
                let per = per_index(&t, gp.axis, p)?;
                for (ch, ids) in gp.idx.iter().enumerate() {
                    acc[ch] += ids.iter().map(|&i| per[i] as f64).sum::<f64>();
                }
            }
            Ok(())
        })?;
        Ok(acc.into_iter().map(|x| if p == 2 { x.sqrt() as f32 } else { x as f32 }).collect())
    }

    /// Group-lasso penalty: over masked groups, the sum over masked-out channels of
    /// the L2 norm of all their producing parameters (weights, biases, BN affine).
    /// Differentiable; a zero scalar when nothing is masked.
    pub fn group_lasso(&self) -> Tensor {
        self.group_lasso_target(&self.masks.keep).penalty(self)
    }

    /// The index tensors of the group-lasso penalty towards `keep` (per group, `false`:
    /// a channel to push to zero), built once for as many training steps as it serves.
    pub fn group_lasso_target(&self, keep: &BTreeMap<usize, Vec<bool>>) -> GroupLasso {
        let dev = self.device();
        let mut terms = Vec::new();
        for (g, v) in keep {
            let off: Vec<usize> =
                v.iter().enumerate().filter(|(_, k)| !**k).map(|(c, _)| c).collect();
            if off.is_empty() {
                continue;
            }
            let mut params = Vec::new();
            for gp in self.group_params(*g).iter().filter(|gp| gp.producing) {
                let (mut ids, mut seg) = (Vec::new(), Vec::new());
                for (j, &c) in off.iter().enumerate() {
                    for &i in gp.idx.get(c).map(Vec::as_slice).unwrap_or_default() {
                        ids.push(i as i64);
                        seg.push(j as i64);
                    }
                }
                if !ids.is_empty() {
                    params.push(LassoParam {
                        name: gp.name.clone(),
                        axis: gp.axis as i64,
                        ids: Tensor::from_slice(&ids).to_device(dev),
                        seg: Tensor::from_slice(&seg).to_device(dev),
                    });
                }
            }
            terms.push((off.len() as i64, params));
        }
        GroupLasso { terms }
    }
}

/// One producing parameter's share of a group-lasso term: the indices along `axis`
/// of the removed channels and, for each, the channel's position in the term.
struct LassoParam {
    name: String,
    axis: i64,
    ids: Tensor,
    seg: Tensor,
}

/// The group-lasso penalty towards fixed keep-vectors ([`Net::group_lasso_target`]):
/// a few tensor ops per producing parameter, whatever the number of removed channels.
pub struct GroupLasso {
    /// Per group: removed channels, parameters.
    terms: Vec<(i64, Vec<LassoParam>)>,
}

impl GroupLasso {
    /// Σ over groups, Σ over removed channels of sqrt(Σ of the squares of all their
    /// producing parameters' entries); differentiable in `net`'s parameters.
    #[allow(clippy::assign_op_pattern)] // out-of-place ops keep the autograd graph simple
    pub fn penalty(&self, net: &Net) -> Tensor {
        let dev = net.device();
        let mut total = Tensor::zeros([], (Kind::Float, dev));
        for (n_off, params) in &self.terms {
            let mut sq = Tensor::zeros([*n_off], (Kind::Float, dev));
            for lp in params {
                let Some(t) = net.param(&lp.name) else { continue };
                if !t.requires_grad() {
                    continue;
                }
                let sel = t.index_select(lp.axis, &lp.ids);
                let per = sel
                    .transpose(0, lp.axis)
                    .reshape([lp.ids.size()[0], -1])
                    .square()
                    .sum_dim_intlist(1, false, Kind::Float);
                sq = sq.index_add(0, &lp.seg, &per);
            }
            total = total + (sq + 1e-12).sqrt().sum(Kind::Float);
        }
        total
    }
}

/// Sum of |x|^p over all axes but `axis`, per index of `axis`.
fn per_index(t: &Tensor, axis: usize, p: u32) -> Result<Vec<f32>, TrainError> {
    let m = t.transpose(0, axis as i64).reshape([t.size()[axis], -1]);
    let v = if p == 1 { m.abs() } else { m.square() }
        .sum_dim_intlist(1, false, Kind::Float)
        .to_device(tch::Device::Cpu);
    Vec::<f32>::try_from(&v).map_err(|e| TrainError::Mask(e.to_string()))
}
