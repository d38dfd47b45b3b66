//! Conv (groups incl. depthwise, dilations, pads, auto_pad) and ConvTranspose.
//! Spec: https://onnx.ai/onnx/operators/onnx__Conv.html (opset 1, 11: auto_pad defaults unchanged).
use super::kernel::{sym_or_pad, window_pads, ConvArgs, Engine, RunCx, H};
use super::{
    ChannelSpec, Fact, Fixup, FixupCx, InferCx, NodeChange, NodeCx, OpDef, OpError, ParamTie, Role,
    Tie, Window,
};
use crate::ir::{Dim, Node};

struct Conv;
struct ConvTranspose;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("Conv", Box::new(Conv));
    r.insert("ConvTranspose", Box::new(ConvTranspose));
}

/// Resolved conv geometry.
pub struct ConvGeom {
    pub group: usize,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// begin pads then end pads, per spatial axis (after auto_pad).
    pub pads: Vec<usize>,
    pub out_spatial: Vec<usize>,
}

/// Largest stride, dilation, pad, kernel size or group a window accepts (far above any
/// real model; keeps the window arithmetic from overflowing).
const MAX_WINDOW: i64 = 1 << 20;

fn attr_vec(node: &Node, name: &str, n: usize, default: usize) -> Result<Vec<usize>, OpError> {
    match node.attr_ints(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n && v.iter().all(|&x| (0..=MAX_WINDOW).contains(&x)) => {
            Ok(v.into_iter().map(|x| x as usize).collect())
        }
        Some(v) => {
            Err(bad!("attribute '{name}' = {v:?} must have {n} entries in 0..={MAX_WINDOW}"))
        }
    }
}

/// Geometry of a Conv/pool window over `spatial` input dims.
pub fn window(
    node: &Node,
    spatial: &[usize],
    kernel: Vec<usize>,
    transpose: bool,
) -> Result<ConvGeom, OpError> {
    let n = spatial.len();
    if kernel.len() != n {
        return Err(bad!("kernel {kernel:?} does not match {n} spatial dims"));
    }
    if kernel.iter().any(|&k| k == 0 || k > MAX_WINDOW as usize) {
        return Err(bad!("kernel {kernel:?} must have sizes in 1..={MAX_WINDOW}"));
    }
    let strides = attr_vec(node, "strides", n, 1)?;
    let dilations = attr_vec(node, "dilations", n, 1)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err("strides and dilations must be >= 1".into());
    }
    let auto_pad = node.attr_str("auto_pad", "NOTSET")?;
    let ceil = node.attr_int("ceil_mode", 0)? != 0;
    let mut pads = attr_vec(node, "pads", 2 * n, 0)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ek = dilations[i] * (kernel[i] - 1) + 1;
        let o = if transpose {
            let op = node
                .attr_ints("output_padding")?
                .map(|v| v.get(i).copied().unwrap_or(0))
                .unwrap_or(0);
            if !(0..=MAX_WINDOW).contains(&op) {
                return Err(bad!("output_padding {op} must be in 0..={MAX_WINDOW}"));
            }
            let op = op as usize;
            match auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => spatial[i] * strides[i],
                _ => (strides[i] * (spatial[i] - 1) + op + ek)
                    .checked_sub(pads[i] + pads[i + n])
                    .ok_or("negative output size")?,
            }
        } else {
            match auto_pad.as_str() {
                "NOTSET" => {
                    let padded = spatial[i] + pads[i] + pads[i + n];
                    if padded < ek {
                        return Err(bad!("window of {ek} does not fit padded input of {padded} on spatial axis {i}"));
                    }
                    if ceil {
                        (padded - ek).div_ceil(strides[i]) + 1
                    } else {
                        (padded - ek) / strides[i] + 1
                    }
                }
                "VALID" => {
                    if spatial[i] < ek {
                        return Err(bad!(
                            "window of {ek} does not fit input of {} on spatial axis {i}",
                            spatial[i]
                        ));
                    }
                    pads[i] = 0;
                    pads[i + n] = 0;
                    (spatial[i] - ek) / strides[i] + 1
                }
                "SAME_UPPER" | "SAME_LOWER" => {
                    let o = spatial[i].div_ceil(strides[i]);
                    let total = ((o - 1) * strides[i] + ek).saturating_sub(spatial[i]);
                    let (small, big) = (total / 2, total - total / 2);
                    if auto_pad == "SAME_UPPER" {
                        pads[i] = small;
                        pads[i + n] = big;
                    } else {
                        pads[i] = big;
                        pads[i + n] = small;
                    }
                    o
                }
                other => return Err(bad!("unknown auto_pad '{other}'")),
            }
        };
        if o == 0 {
            return Err(bad!("output spatial size is 0 on axis {i}"));
        }
        out.push(o);
    }
    let group = node.attr_int("group", 1)?;
    if !(1..=MAX_WINDOW).contains(&group) {
        return Err(bad!("group must be in 1..={MAX_WINDOW}, found {group}"));
    }
    Ok(ConvGeom { group: group as usize, kernel, strides, dilations, pads, out_spatial: out })
}

/// Checks X and W and returns (N dim, C, M, spatial, geometry).
fn conv_geom(cx: &InferCx, transpose: bool) -> Result<(Dim, usize, usize, ConvGeom), OpError> {
    let x = cx.input(0)?;
    let w = cx.input(1)?;
    if x.rank() < 3 {
        return Err(bad!(
            "input must be N x C x spatial..., found shape {}",
            crate::ir::fmt_shape(&x.shape)
        ));
    }
    if w.rank() != x.rank() {
        return Err(bad!(
            "weight has rank {} ({}) but the input has rank {}; a conv weight must be M x C/group x k...",
            w.rank(),
            crate::ir::fmt_shape(&w.shape),
            x.rank()
        ));
    }
    let spatial: Vec<usize> = x.shape[2..]
        .iter()
        .map(|d| {
            d.fixed().ok_or_else(|| {
                format!(
                    "spatial dims of the input must be fixed, found {}",
                    crate::ir::fmt_shape(&x.shape)
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let c = x.dim(1).ok_or("the input channel dim must be fixed")?;
    let wd = w.concrete(0);
    if wd.contains(&0) || spatial.contains(&0) || c == 0 {
        return Err(bad!(
            "zero-sized dimension (input {}, weight {})",
            crate::ir::fmt_shape(&x.shape),
            crate::ir::fmt_shape(&w.shape)
        ));
    }
    let kernel = match cx.node.attr_ints("kernel_shape")? {
        Some(k) => k.into_iter().map(|v| v as usize).collect(),
        None => wd[2..].to_vec(),
    };
    if kernel != wd[2..] {
        return Err(bad!("kernel_shape {kernel:?} disagrees with the weight shape {wd:?}"));
    }
    let g = window(cx.node, &spatial, kernel, transpose)?;
    let m = if transpose {
        if wd[0] != c {
            return Err(bad!("weight {wd:?} expects {} input channels, the input has {c}", wd[0]));
        }
        if c % g.group != 0 {
            return Err(bad!("{c} input channels are not divisible by group {}", g.group));
        }
        wd[1] * g.group
    } else {
        if c % g.group != 0 || wd[1] * g.group != c {
            return Err(bad!(
                "weight {wd:?} with group {} expects {} input channels, the input has {c}",
                g.group,
                wd[1] * g.group
            ));
        }
        if wd[0] % g.group != 0 {
            return Err(bad!("{} output channels are not divisible by group {}", wd[0], g.group));
        }
        wd[0]
    };
    if let Some(b) = cx.opt(2) {
        if b.concrete(0) != [m] {
            return Err(bad!(
                "bias has shape {} but there are {m} output channels",
                crate::ir::fmt_shape(&b.shape)
            ));
        }
    }
    Ok((x.shape[0].clone(), c, m, g))
}

/// A conv's kernel, stride and group, read from its weight's fact and attributes.
fn conv_window(cx: &NodeCx) -> Window {
    let w = cx.input(1);
    let kernel = w.map(|f| f.concrete(1)[2..].iter().copied().max().unwrap_or(1));
    let strides = cx.node.attr_ints("strides").ok().flatten().unwrap_or_default();
    let stride = strides.into_iter().max().unwrap_or(1).max(1) as usize;
    let group = cx.node.attr_int("group", 1).unwrap_or(1).max(1) as usize;
    Window { kernel, stride, group }
}

/// An int-list attribute with `n` entries of `default` when absent.
fn ints_or(node: &Node, name: &str, n: usize, default: i64) -> Result<Vec<i64>, OpError> {
    Ok(node.attr_ints(name)?.unwrap_or_else(|| vec![default; n]))
}

/// A (transposed) convolution in the compute kind of mixed precision.
fn run_conv(cx: &RunCx, e: &mut dyn Engine, args: ConvArgs, x: H) -> Result<Vec<H>, OpError> {
    let w = e.low(cx.x(1)?)?;
    let b = cx.opt(2).map(|b| e.low(b)).transpose()?;
    let y = e.conv(x, w, b, &args)?;
    Ok(vec![e.full(y)?])
}

fn out_fact(cx: &InferCx, n: Dim, m: usize, g: &ConvGeom) -> Vec<Fact> {
    let mut shape = vec![n, Dim::Fixed(m)];
    shape.extend(g.out_spatial.iter().map(|&d| Dim::Fixed(d)));
    vec![Fact::new(cx.input(0).map(|f| f.dtype).unwrap_or(crate::ir::DType::F32), shape)]
}

impl OpDef for Conv {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let (n, _, m, g) = conv_geom(cx, false)?;
        Ok(out_fact(cx, n, m, &g))
    }
    fn macs_weight(&self, cx: &NodeCx) -> Option<(usize, u64)> {
        let y = cx.output(0)?;
        Some((1, y.concrete(1)[2..].iter().product::<usize>() as u64))
    }
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        vec![1, 2]
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let group = cx.node.attr_int("group", 1).unwrap_or(1) as usize;
        let (c, m) = (cx.in_channels(0).unwrap_or(0), cx.out_channels(0).unwrap_or(0));
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; cx.node.inputs.len()],
            outputs: vec![Role::Producer],
            ..Default::default()
        };
        s.params.push(ParamTie { slot: 1, axis: 0, tie: Tie::Output(0) });
        if cx.node.inputs.len() > 2 && cx.node.inputs[2].is_some() {
            s.params.push(ParamTie { slot: 2, axis: 0, tie: Tie::Output(0) });
        }
        if group == 1 {
            s.inputs[0] = Role::Consumer;
            s.params.push(ParamTie { slot: 1, axis: 1, tie: Tie::Input(0) });
        } else if group == c && m == c {
            // Depthwise: channel k in is channel k out.
            s.inputs[0] = Role::Pass;
            s.outputs[0] = Role::Pass;
            s.links = (0..c).map(|k| (0, k, 0, k)).collect();
        } else if group == c {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                1,
                &format!(
                    "depthwise conv {} has a channel multiplier ({} -> {})",
                    cx.node.label(),
                    c,
                    m
                ),
            );
        } else {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                1,
                &format!("grouped conv {} (group={group})", cx.node.label()),
            );
        }
        if !cx.is_const(1) {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                1,
                &format!("conv {} has a computed (non-constant) weight", cx.node.label()),
            );
        }
        s
    }
    /// A pruned depthwise conv keeps one group per remaining channel.
    fn fixup(&self, cx: &FixupCx) -> Result<Option<Fixup>, OpError> {
        let node = cx.node();
        let grp = node.attr_int("group", 1)?;
        if grp <= 1 {
            return Ok(None);
        }
        let c = cx.count_in(0).unwrap_or(0) as i64;
        Ok(Some(Fixup {
            label: format!("set group of depthwise conv {}: {grp} -> {c}", node.label()),
            change: NodeChange::Group(c),
        }))
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = e.low(cx.x(0)?)?;
        let w = cx.x(1)?;
        let wshape = e.shape(w);
        let n = wshape.len().saturating_sub(2);
        let kernel = cx.node.attr_ints("kernel_shape")?.unwrap_or_else(|| wshape[2..].to_vec());
        let strides = ints_or(cx.node, "strides", n, 1)?;
        let dilations = ints_or(cx.node, "dilations", n, 1)?;
        let p = window_pads(cx.node, &e.shape(x), &kernel, &strides, &dilations)?;
        let (x, pads) = sym_or_pad(e, x, &p, 0.0, None)?;
        let output_padding = vec![0; strides.len()];
        let group = cx.node.attr_int("group", 1)?;
        let args = ConvArgs { strides, pads, dilations, transposed: false, output_padding, group };
        run_conv(cx, e, args, x)
    }
    fn window(&self, cx: &NodeCx) -> Option<Window> {
        Some(conv_window(cx))
    }
    fn folds_bn(&self) -> bool {
        true
    }
    /// Its backward reads its inputs, not its output.
    fn output_overwritable(&self) -> bool {
        true
    }
}

impl OpDef for ConvTranspose {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        if let Some(os) = cx.node.attr_ints("output_shape")? {
            let (n, _, m, g) = conv_geom(cx, true)?;
            if os.len() != g.out_spatial.len() || os.iter().any(|&d| d < 1) {
                return Err(bad!(
                    "output_shape {os:?} must hold {} positive spatial sizes",
                    g.out_spatial.len()
                ));
            }
            let mut shape = vec![n, Dim::Fixed(m)];
            shape.extend(os.iter().map(|&d| Dim::Fixed(d as usize)));
            return Ok(vec![Fact::new(cx.input(0)?.dtype, shape)]);
        }
        let (n, _, m, g) = conv_geom(cx, true)?;
        Ok(out_fact(cx, n, m, &g))
    }
    fn macs_weight(&self, cx: &NodeCx) -> Option<(usize, u64)> {
        // Each input pixel is multiplied by the whole (C x M/g x k) weight slice.
        let x = cx.input(0)?;
        Some((1, x.concrete(1)[2..].iter().product::<usize>() as u64))
    }
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        vec![1, 2]
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        // W is C x M/group x k...: axis 0 follows the input channels, axis 1 the output's.
        let n_in = cx.node.inputs.len();
        let group = cx.node.attr_int("group", 1).unwrap_or(1);
        if group != 1 {
            let why = format!("grouped ConvTranspose {} (group={group})", cx.node.label());
            return ChannelSpec::fixed(n_in, 1, &why);
        }
        if !cx.is_const(1) {
            let why = format!("ConvTranspose {} has a computed weight", cx.node.label());
            return ChannelSpec::fixed(n_in, 1, &why);
        }
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; n_in],
            outputs: vec![Role::Producer],
            ..Default::default()
        };
        s.inputs[0] = Role::Consumer;
        s.params.push(ParamTie { slot: 1, axis: 0, tie: Tie::Input(0) });
        s.params.push(ParamTie { slot: 1, axis: 1, tie: Tie::Output(0) });
        if n_in > 2 && cx.node.inputs[2].is_some() {
            s.params.push(ParamTie { slot: 2, axis: 0, tie: Tie::Output(0) });
        }
        s
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let unsupported = |m: &str| Err(OpError::Unsupported(m.into()));
        if cx.node.attr("output_shape").is_some() {
            return unsupported(
                "ConvTranspose with 'output_shape' is not supported; give 'pads' instead",
            );
        }
        let x = e.low(cx.x(0)?)?;
        let n = e.shape(cx.x(1)?).len().saturating_sub(2);
        let p = ints_or(cx.node, "pads", 2 * n, 0)?;
        if p.len() != 2 * n
            || (0..n).any(|i| p[i] != p[n + i])
            || cx.node.attr_str("auto_pad", "NOTSET")? != "NOTSET"
        {
            return unsupported("ConvTranspose supports symmetric explicit 'pads' only");
        }
        let args = ConvArgs {
            strides: ints_or(cx.node, "strides", n, 1)?,
            pads: p[..n].to_vec(),
            dilations: ints_or(cx.node, "dilations", n, 1)?,
            transposed: true,
            output_padding: ints_or(cx.node, "output_padding", n, 0)?,
            group: cx.node.attr_int("group", 1)?,
        };
        run_conv(cx, e, args, x)
    }
    fn window(&self, cx: &NodeCx) -> Option<Window> {
        Some(conv_window(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, ints, same, text, tie, T};
    use super::super::{NodeChange, Role, Tie};
    use crate::ir::{Attr, Dim, ValueId};

    type Attrs = Vec<(&'static str, Attr)>;

    /// `op(x, W[, B])` on an input of per-sample shape `x`; B has `bias` elements.
    fn conv(
        op: &str,
        x: &[usize],
        w: &[usize],
        bias: Option<usize>,
        attrs: &[(&str, Attr)],
    ) -> (T, ValueId) {
        let mut t = T::new();
        let x = t.input(batch(x));
        let w = t.weight(w);
        let mut ins = vec![x, w];
        if let Some(b) = bias {
            ins.push(t.weight(&[b]));
        }
        let y = t.op(op, &ins, attrs);
        (t, y)
    }

    #[test]
    fn conv_shape_macs_params_and_ties() {
        let (t, y) = conv(
            "Conv",
            &[4, 7, 7],
            &[8, 4, 3, 3],
            Some(8),
            &[("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1]))],
        );
        assert_eq!(t.shape(y), batch(&[8, 4, 4])); // (7 + 2 - 3) / 2 + 1
        assert_eq!(t.macs(0), Some(8 * 4 * 4 * (4 * 3 * 3)));
        assert_eq!(t.params(0), vec![1, 2]);
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Consumer, Role::Ignore, Role::Ignore]);
        assert_eq!(s.outputs, vec![Role::Producer]);
        assert!(s.links.is_empty(), "a conv mixes channels: no identity links");
        assert_eq!(s.params.len(), 3);
        for p in [tie(1, 0, Tie::Output(0)), tie(2, 0, Tie::Output(0)), tie(1, 1, Tie::Input(0))] {
            assert!(s.params.contains(&p), "{p:?} missing from {:?}", s.params);
        }
    }

    #[test]
    fn conv_geometry_dilations_asymmetric_pads_auto_pad_and_1d() {
        // H: 10 + 0 + 2 - (2 * 2 + 1) + 1 = 8; W: 9 + 1 + 0 - 3 + 1 = 8.
        let (t, y) = conv(
            "Conv",
            &[2, 10, 9],
            &[3, 2, 3, 3],
            None,
            &[("dilations", ints(&[2, 1])), ("pads", ints(&[0, 1, 2, 0]))],
        );
        assert_eq!(t.shape(y), batch(&[3, 8, 8]));
        assert_eq!(t.macs(0), Some(3 * 8 * 8 * (2 * 9)));
        assert_eq!(t.params(0), vec![1, 2]);
        for (pad, out, pads) in [
            ("SAME_UPPER", [4, 3], vec![1, 0, 1, 1]),
            ("SAME_LOWER", [4, 3], vec![1, 1, 1, 0]),
            ("VALID", [3, 2], vec![0, 0, 0, 0]),
        ] {
            let attrs = [("auto_pad", text(pad)), ("strides", ints(&[2, 2]))];
            let (t, y) = conv("Conv", &[2, 7, 6], &[4, 2, 3, 3], None, &attrs);
            assert_eq!(t.shape(y), batch(&[4, out[0], out[1]]), "{pad}");
            assert_eq!(t.macs(0), Some((4 * out[0] * out[1] * 2 * 9) as u64), "{pad}");
            let g = super::window(&t.g.nodes[0], &[7, 6], vec![3, 3], false).unwrap();
            assert_eq!(g.pads, pads, "{pad}");
        }
        // 1-D: (10 - 4) / 3 + 1 = 3.
        let (t, y) = conv("Conv", &[3, 10], &[5, 3, 4], Some(5), &[("strides", ints(&[3]))]);
        assert_eq!(t.shape(y), batch(&[5, 3]));
        assert_eq!(t.macs(0), Some(5 * 3 * 3 * 4));
    }

    #[test]
    fn depthwise_conv_fixup_sets_one_group_per_kept_channel() {
        let (t, y) = conv("Conv", &[4, 5, 5], &[4, 1, 3, 3], Some(4), &[("group", int(4))]);
        let x = t.g.inputs[0];
        let f = t.fixup(0, &[(x, vec![0, 2, 3]), (y, vec![0, 2, 3])]).unwrap().unwrap();
        assert_eq!(f.change, NodeChange::Group(3));
        assert_eq!(f.label, "set group of depthwise conv 'n0' (Conv): 4 -> 3");
        // A conv with one group only has its weights sliced.
        let (t, y) = conv("Conv", &[4, 5, 5], &[8, 4, 3, 3], None, &[]);
        assert_eq!(t.fixup(0, &[(y, vec![0, 1])]), Ok(None));
    }

    #[test]
    fn depthwise_conv_passes_channels_through() {
        let (t, y) = conv("Conv", &[6, 5, 5], &[6, 1, 3, 3], Some(6), &[("group", int(6))]);
        assert_eq!(t.shape(y), batch(&[6, 3, 3]));
        assert_eq!(t.macs(0), Some(6 * 3 * 3 * 9));
        let s = t.spec(0);
        assert_eq!(s.inputs[0], Role::Pass);
        assert_eq!(s.outputs, vec![Role::Pass]);
        assert_eq!(s.links, same(0, 0, 6));
        assert_eq!(s.params, vec![tie(1, 0, Tie::Output(0)), tie(2, 0, Tie::Output(0))]);
    }

    #[test]
    fn grouped_multiplier_and_computed_weight_convs_are_barriers() {
        let (t, y) = conv("Conv", &[4, 5, 5], &[8, 2, 3, 3], None, &[("group", int(2))]);
        assert_eq!(t.shape(y), batch(&[8, 3, 3]));
        assert_eq!(t.macs(0), Some(8 * 9 * (2 * 9)));
        assert!(all_fixed(&t.spec(0), "grouped conv"), "{:?}", t.spec(0));
        let (t, y) = conv("Conv", &[3, 5, 5], &[6, 1, 3, 3], None, &[("group", int(3))]);
        assert_eq!(t.shape(y), batch(&[6, 3, 3]));
        assert!(all_fixed(&t.spec(0), "channel multiplier (3 -> 6)"), "{:?}", t.spec(0));
        let mut t = T::new();
        let x = t.input(batch(&[4, 5, 5]));
        let w = t.input(vec![Dim::Fixed(8), Dim::Fixed(4), Dim::Fixed(3), Dim::Fixed(3)]);
        let y = t.op("Conv", &[x, w], &[]);
        assert_eq!(t.shape(y), batch(&[8, 3, 3]));
        assert!(all_fixed(&t.spec(0), "computed (non-constant) weight"), "{:?}", t.spec(0));
    }

    #[test]
    fn conv_rejects_bad_shapes_and_attributes() {
        type Case = (&'static [usize], &'static [usize], Option<usize>, Attrs, &'static str);
        let cases: Vec<Case> = vec![
            (&[4, 5, 5], &[8, 3, 3, 3], None, vec![], "expects 3 input channels, the input has 4"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("group", int(0))], "group must be in 1..="),
            (&[4, 5, 5], &[5, 2, 3, 3], None, vec![("group", int(2))], "not divisible by group 2"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("strides", ints(&[0, 1]))], ">= 1"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("strides", ints(&[1 << 21, 1]))], "0..="),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("pads", ints(&[1, 1]))], "'pads'"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("pads", ints(&[-1, 0, 0, 0]))], "'pads'"),
            (&[4, 2, 2], &[8, 4, 3, 3], None, vec![], "does not fit"),
            (&[4, 5, 5], &[8, 4, 3], None, vec![], "weight has rank 3"),
            (&[4], &[8, 4], None, vec![], "input must be N x C x spatial"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("auto_pad", text("SAME"))], "unknown auto_pad"),
            (&[4, 5, 5], &[8, 4, 3, 3], Some(4), vec![], "bias has shape [4] but there are 8"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("kernel_shape", ints(&[5, 5]))], "disagrees"),
            (&[4, 5, 5], &[8, 4, 3, 3], None, vec![("group", text("2"))], "must be an int"),
        ];
        for (x, w, b, attrs, want) in cases {
            let (t, _) = conv("Conv", x, w, b, &attrs);
            let e = t.err();
            assert!(e.contains(want), "{x:?} {w:?} {attrs:?}: {e}");
        }
    }

    #[test]
    fn conv_transpose_shape_macs_params_and_ties() {
        // 2 * (5 - 1) + 1 (output_padding) + 3 - 1 - 1 = 10.
        let attrs = [
            ("strides", ints(&[2, 2])),
            ("pads", ints(&[1, 1, 1, 1])),
            ("output_padding", ints(&[1, 1])),
        ];
        let (t, y) = conv("ConvTranspose", &[4, 5, 5], &[4, 3, 3, 3], Some(3), &attrs);
        assert_eq!(t.shape(y), batch(&[3, 10, 10]));
        // Every input element meets the whole M/group x k x k weight slice.
        assert_eq!(t.macs(0), Some((4 * 5 * 5) * 3 * 9));
        assert_eq!(t.params(0), vec![1, 2]);
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Consumer, Role::Ignore, Role::Ignore]);
        assert_eq!(s.outputs, vec![Role::Producer]);
        assert!(s.links.is_empty());
        assert_eq!(
            s.params,
            vec![tie(1, 0, Tie::Input(0)), tie(1, 1, Tie::Output(0)), tie(2, 0, Tie::Output(0))]
        );
        let (t, y) = conv(
            "ConvTranspose",
            &[4, 5, 5],
            &[4, 3, 3, 3],
            None,
            &[("strides", ints(&[2, 2])), ("output_shape", ints(&[11, 11]))],
        );
        assert_eq!(t.shape(y), batch(&[3, 11, 11]));
        assert_eq!(t.spec(0).params, vec![tie(1, 0, Tie::Input(0)), tie(1, 1, Tie::Output(0))]);
        let attrs = [("strides", ints(&[2, 3])), ("auto_pad", text("SAME_UPPER"))];
        let (t, y) = conv("ConvTranspose", &[4, 5, 5], &[4, 3, 3, 3], None, &attrs);
        assert_eq!(t.shape(y), batch(&[3, 10, 15]));
    }

    #[test]
    fn grouped_or_computed_conv_transpose_is_a_barrier() {
        let (t, y) = conv("ConvTranspose", &[4, 5, 5], &[4, 2, 3, 3], None, &[("group", int(2))]);
        assert_eq!(t.shape(y), batch(&[4, 7, 7]));
        assert_eq!(t.macs(0), Some((4 * 5 * 5) * 2 * 9));
        assert!(all_fixed(&t.spec(0), "grouped ConvTranspose"), "{:?}", t.spec(0));
        let mut t = T::new();
        let x = t.input(batch(&[4, 5, 5]));
        let w = t.input(vec![Dim::Fixed(4), Dim::Fixed(3), Dim::Fixed(3), Dim::Fixed(3)]);
        t.op("ConvTranspose", &[x, w], &[]);
        assert!(all_fixed(&t.spec(0), "computed weight"), "{:?}", t.spec(0));
    }

    #[test]
    fn conv_transpose_rejects_bad_shapes_and_attributes() {
        type Case = (&'static [usize], &'static [usize], Attrs, &'static str);
        let cases: Vec<Case> = vec![
            (&[4, 5, 5], &[3, 3, 3, 3], vec![], "expects 3 input channels, the input has 4"),
            (&[4, 5, 5], &[4, 1, 3, 3], vec![("group", int(3))], "not divisible by group 3"),
            (&[4, 5, 5], &[4, 3, 3, 3], vec![("output_shape", ints(&[11]))], "2 positive"),
            (&[4, 5, 5], &[4, 3, 3, 3], vec![("output_shape", ints(&[-1, 5]))], "2 positive"),
            (&[4, 1, 1], &[4, 3, 1, 1], vec![("pads", ints(&[1, 1, 1, 1]))], "negative output"),
            (&[4, 5, 5], &[4, 3, 3, 3], vec![("output_padding", ints(&[-1, 0]))], "output_padding"),
        ];
        for (x, w, attrs, want) in cases {
            let (t, _) = conv("ConvTranspose", x, w, None, &attrs);
            let e = t.err();
            assert!(e.contains(want), "{x:?} {w:?} {attrs:?}: {e}");
        }
    }
}
