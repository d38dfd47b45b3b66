//! A pruning plan: checked keep-sets plus every concrete graph edit they imply.
//!
//! Channels of a group are removed from every member value at once: a member
//! value's kept axis-1 indices are the union of `members[v][k]` over the kept
//! group channels `k` (several per channel after a Flatten), and a value shared
//! by several groups (a Concat output) loses the union of their removals.
//! Every parameter axis that follows a member value is sliced with that
//! value's kept indices. Ops whose attributes or constants encode channel
//! counts get a fix-up edit: depthwise Conv `group`, Split sizes, Slice
//! bounds on the channel axis, Reshape targets that hard-code a channel or
//! feature count. Pad on channels needs none (its pads stay, the padded
//! channels belong to a fixed group) and neither does Concat.
use super::RewriteError;
use crate::analysis::Analysis;
use crate::ir::ops::{self, FixupCx, NodeChange};
use crate::ir::{Graph, NodeId, ValueId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Kept channels per pruned group: group id → sorted group-channel indices.
/// Groups absent from the map keep all their channels.
pub type KeepSets = BTreeMap<usize, Vec<usize>>;

/// One group's change, the headline of the plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GroupChange {
    pub group: usize,
    /// Index among prunable layers.
    pub layer: Option<usize>,
    /// e.g. `layer 3 '/layer2/layer2.0/conv1/Conv' (group 5)`.
    pub label: String,
    pub from: usize,
    pub to: usize,
    pub keep: Vec<usize>,
}

/// A concrete edit of the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Keep only `keep` along `axis` of an initializer.
    SliceInit { value: ValueId, axis: usize, keep: Vec<usize> },
    /// An op's fix-up of its own node (depthwise `group`, Split sizes, Slice
    /// channels, Reshape target), as its [`ops::OpDef::fixup`] declares it.
    Node { node: NodeId, change: NodeChange },
}

/// A checked, printable set of edits.
#[derive(Clone, Debug)]
pub struct Plan {
    pub changes: Vec<GroupChange>,
    /// (label, edit) in application order.
    pub edits: Vec<(String, Edit)>,
    /// Kept channel count per group (all groups; full width where untouched).
    pub kept: Vec<usize>,
    /// Kept axis-1 indices of every member value that loses channels.
    pub kept_idx: BTreeMap<ValueId, Vec<usize>>,
}

/// How reports name a group: its layer index and first producer.
pub fn group_label(g: &Graph, a: &Analysis, gid: usize) -> String {
    let layer = a.layers.iter().find(|l| l.group == gid);
    match (layer, a.groups.get(gid)) {
        (Some(l), _) => format!("layer {} '{}' (group {gid})", l.index, l.name),
        (None, Some(gr)) => match gr.producers.first() {
            Some(&p) => format!("group {gid} (produced by '{}')", g.nodes[p].name),
            None => format!("group {gid}"),
        },
        (None, None) => format!("group {gid}"),
    }
}

fn plan_err(g: &Graph, a: &Analysis, gid: usize, msg: impl Into<String>) -> RewriteError {
    RewriteError::Plan { group: group_label(g, a, gid), msg: msg.into() }
}

impl Plan {
    /// Checks `keep` against the analysis of `g` and derives the edits.
    pub fn build(g: &Graph, a: &Analysis, keep: &KeepSets) -> Result<Plan, RewriteError> {
        let mut kept: Vec<usize> = a.groups.iter().map(|gr| gr.channels).collect();
        let mut changes = Vec::new();
        let mut removed: BTreeMap<ValueId, BTreeSet<usize>> = BTreeMap::new();
        for (&gid, ks) in keep {
            if !check_keep(g, a, gid, ks)? {
                continue;
            }
            let gr = &a.groups[gid];
            kept[gid] = ks.len();
            let keep_set: BTreeSet<usize> = ks.iter().copied().collect();
            for (v, per) in &gr.members {
                let r = removed.entry(*v).or_default();
                for (k, idx) in per.iter().enumerate() {
                    if !keep_set.contains(&k) {
                        r.extend(idx.iter().copied());
                    }
                }
            }
            let layer = a.layers.iter().find(|l| l.group == gid).map(|l| l.index);
            changes.push(GroupChange {
                group: gid,
                layer,
                label: group_label(g, a, gid),
                from: gr.channels,
                to: ks.len(),
                keep: ks.clone(),
            });
        }
        let width = |v: ValueId| a.facts[v].as_ref().and_then(|f| f.dim(1)).unwrap_or(0);
        let kept_idx: BTreeMap<ValueId, Vec<usize>> = removed
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(&v, r)| (v, (0..width(v)).filter(|i| !r.contains(i)).collect()))
            .collect();
        let cx = Cx { g, a, kept_idx: &kept_idx };
        let mut edits = param_edits(&cx, &changes)?;
        // Op fix-ups on every node touching a value that loses channels.
        for (nid, node) in g.nodes.iter().enumerate() {
            let touched =
                node.inputs.iter().chain(&node.outputs).flatten().any(|v| kept_idx.contains_key(v));
            if touched {
                edits.extend(fixup(&cx, nid)?);
            }
        }
        Ok(Plan { changes, edits, kept, kept_idx })
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Checks the keep-set `ks` of group `gid`: false when it keeps every channel (nothing to do).
fn check_keep(g: &Graph, a: &Analysis, gid: usize, ks: &[usize]) -> Result<bool, RewriteError> {
    let Some(gr) = a.groups.get(gid) else {
        return Err(RewriteError::Plan {
            group: format!("group {gid}"),
            msg: format!("no such group (the model has {})", a.groups.len()),
        });
    };
    if ks.is_empty() {
        return Err(plan_err(g, a, gid, "the keep-set is empty (at least one channel must stay)"));
    }
    if let Some(&bad) = ks.iter().find(|&&k| k >= gr.channels) {
        return Err(plan_err(
            g,
            a,
            gid,
            format!("channel index {bad} is out of range (the group has {} channels)", gr.channels),
        ));
    }
    if ks.windows(2).any(|w| w[0] >= w[1]) {
        let mut s = ks.to_vec();
        s.sort_unstable();
        let dup =
            s.windows(2).find(|w| w[0] == w[1]).map(|w| format!("index {} appears twice", w[0]));
        return Err(plan_err(
            g,
            a,
            gid,
            dup.unwrap_or_else(|| "the keep-set must be sorted".into()),
        ));
    }
    if ks.len() == gr.channels {
        return Ok(false);
    }
    if !gr.prunable {
        return Err(plan_err(
            g,
            a,
            gid,
            format!("the group is not prunable: {}", gr.reason.as_deref().unwrap_or("fixed")),
        ));
    }
    Ok(true)
}

/// What the edit builders read: the graph, its analysis and the kept indices of every
/// value that loses channels.
struct Cx<'a> {
    g: &'a Graph,
    a: &'a Analysis,
    kept_idx: &'a BTreeMap<ValueId, Vec<usize>>,
}

impl Cx<'_> {
    /// Channels of value `v` before pruning.
    fn width(&self, v: ValueId) -> usize {
        self.a.facts[v].as_ref().and_then(|f| f.dim(1)).unwrap_or(0)
    }
}

/// Parameters: each (initializer, axis) of the changed groups sliced once, with its
/// member's kept indices.
fn param_edits(cx: &Cx, changes: &[GroupChange]) -> Result<Vec<(String, Edit)>, RewriteError> {
    let (g, a, kept_idx) = (cx.g, cx.a, cx.kept_idx);
    let width = |v: ValueId| cx.width(v);
    let mut edits = Vec::new();
    // Parameters: each (initializer, axis) once, with its member's kept indices.
    let mut params: BTreeMap<(ValueId, usize), ValueId> = BTreeMap::new();
    for c in changes {
        for p in &a.groups[c.group].params {
            params.insert((p.value, p.axis), p.follows);
        }
    }
    for ((value, axis), follows) in params {
        let Some(ki) = kept_idx.get(&follows) else { continue };
        let t = g.values[value].init.as_ref().expect("group params are initializers");
        if t.shape.get(axis) != Some(&width(follows)) {
            return Err(RewriteError::Param {
                value: g.values[value].name.clone(),
                msg: format!(
                    "axis {axis} of shape {:?} should follow the {} channels of '{}'",
                    t.shape,
                    width(follows),
                    g.values[follows].name
                ),
            });
        }
        let label = format!(
            "slice '{}' {:?} axis {axis}: {} -> {}",
            g.values[value].name,
            t.shape,
            t.shape[axis],
            ki.len()
        );
        edits.push((label, Edit::SliceInit { value, axis, keep: ki.clone() }));
    }
    Ok(edits)
}

/// The op's own fix-up (see [`ops::OpDef::fixup`]) when node `nid` touches a value that
/// loses channels.
fn fixup(cx: &Cx, nid: NodeId) -> Result<Option<(String, Edit)>, RewriteError> {
    let node = &cx.g.nodes[nid];
    let Some(op) = ops::lookup(node) else { return Ok(None) };
    let fx = FixupCx::new(cx.g, &cx.a.facts, node, cx.kept_idx);
    let f = op.fixup(&fx).map_err(|error| RewriteError::Op { node: node.label(), error })?;
    Ok(f.map(|f| (f.label, Edit::Node { node: nid, change: f.change })))
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "plan: no channel removed");
        }
        writeln!(f, "plan: {} group(s) pruned, {} edit(s)", self.changes.len(), self.edits.len())?;
        for c in &self.changes {
            writeln!(f, "  {}: {} -> {} channels", c.label, c.from, c.to)?;
        }
        writeln!(f, "edits:")?;
        for (label, _) in &self.edits {
            writeln!(f, "  {label}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{self, ImportOptions};
    use crate::ir::Attr;
    use crate::rewrite::rank;

    #[test]
    fn a_fixup_error_names_the_node_and_its_op() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/ops_cnn.onnx");
        let (mut g, a) = analysis::import(&path, &ImportOptions::default()).unwrap();
        let keep = rank::keep_sets(&g, &a, &[0.0, 0.5, 0.5, 0.0], rank::Criterion::L1);
        assert!(Plan::build(&g, &a, &keep).is_ok());
        let split = g.nodes.iter().position(|n| n.op_type == "Split").unwrap();
        g.nodes[split].set_attr("axis", Attr::Str(b"1".to_vec()));
        let e = Plan::build(&g, &a, &keep).unwrap_err();
        assert!(matches!(e, RewriteError::Op { .. }), "{e:?}");
        let want = format!(
            "node {}: attribute 'axis' must be an int, found string",
            g.nodes[split].label()
        );
        assert_eq!(e.to_string(), want);
    }
}
