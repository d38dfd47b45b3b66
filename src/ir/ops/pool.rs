//! Pooling and reductions: MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool, ReduceMean/ReduceMax (axes as attribute < 18, input >= 18).
use super::conv::window;
use super::kernel::{
    self, sym_or_pad, torch_pad, window_pads, Engine, PadMode, PoolArgs, RunCx, H,
};
use super::{norm_axis, ChannelSpec, Fact, InferCx, NodeCx, OpDef, OpError};
use crate::ir::Dim;

/// Max (`true`) or average pooling, and their global and reduction forms.
struct Pool(bool);
struct GlobalPool(bool);
struct Reduce(bool);

pub(super) fn register(r: &mut super::Registry) {
    r.insert("MaxPool", Box::new(Pool(true)));
    r.insert("AveragePool", Box::new(Pool(false)));
    r.insert("GlobalAveragePool", Box::new(GlobalPool(false)));
    r.insert("GlobalMaxPool", Box::new(GlobalPool(true)));
    r.insert("ReduceMean", Box::new(Reduce(false)));
    r.insert("ReduceMax", Box::new(Reduce(true)));
}

/// The window of a 2-D pool: kernel, strides, dilations and ONNX pads.
fn pool_args(cx: &RunCx, e: &mut dyn Engine, x: H) -> Result<PoolArgs, OpError> {
    let size = e.shape(x);
    if size.len() != 4 {
        return Err(OpError::Unsupported(format!(
            "only 2-D pooling (rank-4 input) is supported, the input has rank {}",
            size.len()
        )));
    }
    let kernel = cx.node.attr_ints("kernel_shape")?.ok_or("'kernel_shape' is required")?;
    let strides = cx.node.attr_ints("strides")?.unwrap_or_else(|| vec![1; 2]);
    let dilations = cx.node.attr_ints("dilations")?.unwrap_or_else(|| vec![1; 2]);
    let pads = window_pads(cx.node, &size, &kernel, &strides, &dilations)?;
    let ceil = cx.node.attr_int("ceil_mode", 0)? != 0;
    let count_include_pad = cx.node.attr_int("count_include_pad", 0)? != 0;
    Ok(PoolArgs { kernel, strides, pads, dilations, ceil, count_include_pad })
}

/// Average pooling: asymmetric pads only where explicit zero padding is the same function.
fn avg_pool(e: &mut dyn Engine, x: H, mut a: PoolArgs) -> Result<H, OpError> {
    if a.dilations.iter().any(|&d| d != 1) {
        return Err(OpError::Unsupported("AveragePool with dilations is not supported".into()));
    }
    let p = std::mem::take(&mut a.pads);
    let sym = (0..2).all(|i| p[i] == p[2 + i] && p[i] <= a.kernel[i] / 2);
    let x = if sym {
        a.pads = p[..2].to_vec();
        x
    } else if a.count_include_pad && !a.ceil {
        a.pads = vec![0, 0];
        e.pad(x, &torch_pad(&p), PadMode::Constant(0.0))?
    } else {
        return Err(OpError::Unsupported(format!(
            "AveragePool with asymmetric pads {p:?} needs count_include_pad=1 and ceil_mode=0"
        )));
    };
    e.avg_pool2d(x, &a)
}

impl OpDef for Pool {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        if x.rank() < 3 {
            return Err(bad!(
                "input must be N x C x spatial..., found {}",
                crate::ir::fmt_shape(&x.shape)
            ));
        }
        let spatial: Vec<usize> = x.shape[2..]
            .iter()
            .map(|d| d.fixed().ok_or("spatial dims must be fixed"))
            .collect::<Result<_, _>>()?;
        let kernel: Vec<usize> = cx
            .node
            .attr_ints("kernel_shape")?
            .ok_or("kernel_shape is required")?
            .into_iter()
            .map(|k| k as usize)
            .collect();
        if kernel.contains(&0) {
            return Err("kernel_shape entries must be >= 1".into());
        }
        let g = window(cx.node, &spatial, kernel, false)?;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(g.out_spatial.iter().map(|&d| Dim::Fixed(d)));
        let mut out = vec![Fact::new(x.dtype, shape.clone())];
        if cx.node.outputs.len() > 1 {
            out.push(Fact::new(crate::ir::DType::I64, shape)); // MaxPool indices
        }
        Ok(out)
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        if cx.node.outputs.len() > 1 {
            s.outputs[1] = super::Role::Fixed("MaxPool indices output".into());
        }
        s
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let mut a = pool_args(cx, e, x)?;
        if !self.0 {
            return Ok(vec![avg_pool(e, x, a)?]);
        }
        let (x, pads) = sym_or_pad(e, x, &a.pads, f64::NEG_INFINITY, Some(&a.kernel))?;
        a.pads = pads;
        Ok(vec![e.max_pool2d(x, &a)?])
    }
}

impl OpDef for GlobalPool {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        if x.rank() < 3 {
            return Err(bad!(
                "input must be N x C x spatial..., found {}",
                crate::ir::fmt_shape(&x.shape)
            ));
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(std::iter::repeat_n(Dim::Fixed(1), x.rank() - 2));
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::per_channel(cx, &[0])
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let dims: Vec<i64> = (2..e.shape(x).len() as i64).collect();
        Ok(vec![e.reduce(x, &dims, true, self.0)?])
    }
}

/// Reduced axes (normalised, sorted) and keepdims of a Reduce node.
pub fn reduce_axes(cx: &InferCx) -> Result<(Vec<usize>, bool), OpError> {
    let x = cx.input(0)?;
    let keep = cx.node.attr_int("keepdims", 1)? != 0;
    let axes = match cx.node.attr_ints("axes")? {
        Some(a) => Some(a),
        None if cx.node.inputs.len() > 1 && cx.node.inputs[1].is_some() => {
            Some(cx.const_ints(1, "axes")?)
        }
        None => None,
    };
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => {
            a.iter().map(|&i| norm_axis(i, x.rank())).collect::<Result<_, _>>()?
        }
        _ => {
            if cx.node.attr_int("noop_with_empty_axes", 0)? != 0 {
                vec![]
            } else {
                (0..x.rank()).collect()
            }
        }
    };
    axes.sort_unstable();
    axes.dedup();
    Ok((axes, keep))
}

impl OpDef for Reduce {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let (axes, keep) = reduce_axes(cx)?;
        let shape = x
            .shape
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keep) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Fixed(1)),
                (true, false) => None,
            })
            .collect();
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let keep = cx.node.attr_int("keepdims", 1).unwrap_or(1) != 0;
        let axes = cx
            .node
            .attr_ints("axes")
            .ok()
            .flatten()
            .or_else(|| cx.input(1).and_then(|f| f.konst.as_ref()).and_then(|t| t.to_i64()));
        let rank = cx.input(0).map_or(0, |f| f.rank());
        let axes: Vec<usize> =
            axes.unwrap_or_default().iter().filter_map(|&a| norm_axis(a, rank).ok()).collect();
        if axes.is_empty() || axes.contains(&1) || (axes.contains(&0) && !keep) {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                1,
                &format!(
                    "{} {} reduces over the channel or batch axis",
                    cx.node.op_type,
                    cx.node.label()
                ),
            );
        }
        ChannelSpec::per_channel(cx, &[0])
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let r = e.shape(x).len();
        let keep = cx.node.attr_int("keepdims", 1)? != 0;
        let since = 18; // axes moved from attribute to input in opset 18
        let axes = match cx.axes(e, since, 1)? {
            Some(a) if !a.is_empty() => {
                a.into_iter().map(|a| kernel::axis(a, r)).collect::<Result<Vec<_>, _>>()?
            }
            _ if cx.node.attr_int("noop_with_empty_axes", 0)? != 0 => return Ok(vec![x]),
            _ => (0..r as i64).collect(),
        };
        Ok(vec![e.reduce(x, &axes, keep, self.0)?])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, ints, same, text, T};
    use super::super::Role;
    use crate::ir::{Attr, DType, Dim};

    fn one(op: &str, x: &[usize], attrs: &[(&str, Attr)]) -> (T, usize) {
        let mut t = T::new();
        let x = t.input(batch(x));
        let y = t.op(op, &[x], attrs);
        (t, y)
    }

    #[test]
    fn pools_shrink_space_and_pass_channels() {
        let k2s2 = [("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))];
        for op in ["MaxPool", "AveragePool"] {
            let (t, y) = one(op, &[3, 8, 8], &k2s2);
            assert_eq!(t.shape(y), batch(&[3, 4, 4]), "{op}");
            assert_eq!(t.macs(0), None);
            assert!(t.params(0).is_empty());
            let s = t.spec(0);
            assert_eq!((s.inputs.clone(), s.outputs.clone()), (vec![Role::Pass], vec![Role::Pass]));
            assert_eq!(s.links, same(0, 0, 3), "{op}");
        }
        // floor((7 - 2) / 2) + 1 = 3; ceil_mode: 4.
        let (t, y) = one("MaxPool", &[3, 7, 7], &k2s2);
        assert_eq!(t.shape(y), batch(&[3, 3, 3]));
        let attrs = [k2s2[0].clone(), k2s2[1].clone(), ("ceil_mode", int(1))];
        let (t, y) = one("MaxPool", &[3, 7, 7], &attrs);
        assert_eq!(t.shape(y), batch(&[3, 4, 4]));
        let attrs = [("kernel_shape", ints(&[3, 3])), ("pads", ints(&[1, 1, 1, 1]))];
        let (t, y) = one("AveragePool", &[3, 8, 8], &attrs);
        assert_eq!(t.shape(y), batch(&[3, 8, 8]));
        let attrs = [k2s2[0].clone(), ("strides", ints(&[2, 3])), ("auto_pad", text("SAME_UPPER"))];
        let (t, y) = one("AveragePool", &[3, 7, 7], &attrs);
        assert_eq!(t.shape(y), batch(&[3, 4, 3]));
    }

    #[test]
    fn max_pool_indices_are_an_int64_barrier() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 8, 8]));
        let y = t.node("MaxPool", &[Some(x)], 2, &[("kernel_shape", ints(&[2, 2]))]);
        let f = t.facts();
        assert_eq!(f[y[1]].as_ref().unwrap().shape, batch(&[3, 7, 7]));
        assert_eq!(f[y[1]].as_ref().unwrap().dtype, DType::I64);
        let s = t.spec(0);
        assert_eq!(s.outputs[0], Role::Pass);
        assert!(matches!(&s.outputs[1], Role::Fixed(m) if m.contains("indices")), "{s:?}");
    }

    #[test]
    fn pools_reject_bad_kernels_and_ranks() {
        type Case = (&'static [usize], Vec<(&'static str, Attr)>, &'static str);
        let cases: Vec<Case> = vec![
            (&[3, 8, 8], vec![], "kernel_shape is required"),
            (&[3, 8, 8], vec![("kernel_shape", ints(&[0, 2]))], ">= 1"),
            (&[3, 8, 8], vec![("kernel_shape", ints(&[-1, 2]))], "sizes in 1..="),
            (&[3, 8, 8], vec![("kernel_shape", ints(&[3]))], "does not match 2 spatial dims"),
            (&[3, 8, 8], vec![("kernel_shape", ints(&[9, 9]))], "does not fit"),
            (&[3], vec![("kernel_shape", ints(&[2]))], "input must be N x C x spatial"),
        ];
        for (x, attrs, want) in cases {
            let (t, _) = one("MaxPool", x, &attrs);
            assert!(t.err().contains(want), "{attrs:?}: {}", t.err());
        }
    }

    #[test]
    fn global_pools_keep_one_pixel_per_channel() {
        let (t, y) = one("GlobalAveragePool", &[3, 5, 7], &[]);
        assert_eq!(t.shape(y), batch(&[3, 1, 1]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        assert_eq!(t.macs(0), None);
        let (t, y) = one("GlobalMaxPool", &[3, 5], &[]);
        assert_eq!(t.shape(y), batch(&[3, 1]));
        let (t, _) = one("GlobalMaxPool", &[3], &[]);
        assert!(t.err().contains("input must be N x C x spatial"), "{}", t.err());
    }

    #[test]
    fn reductions_over_space_pass_channels() {
        for (axes, keep, out) in [
            (vec![2, 3], 1, batch(&[3, 1, 1])),
            (vec![2, 3], 0, batch(&[3])),
            (vec![-1], 1, batch(&[3, 4, 1])),
            (vec![0], 1, vec![Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(4)]),
        ] {
            for op in ["ReduceMean", "ReduceMax"] {
                let (t, y) = one(op, &[3, 4, 4], &[("axes", ints(&axes)), ("keepdims", int(keep))]);
                assert_eq!(t.shape(y), out, "{op} {axes:?} keepdims={keep}");
                assert_eq!(t.spec(0).links, same(0, 0, 3), "{op} {axes:?}");
                assert_eq!(t.macs(0), None);
            }
        }
        // Opset 18: axes as a constant input.
        let mut t = T::opset(18);
        let x = t.input(batch(&[3, 4, 4]));
        let axes = t.ints(&[2, 3]);
        let y = t.op("ReduceMean", &[x, axes], &[("keepdims", int(0))]);
        assert_eq!(t.shape(y), batch(&[3]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        assert_eq!(t.spec(0).inputs, vec![Role::Pass, Role::Ignore]);
    }

    #[test]
    fn reductions_over_channels_batch_or_everything_are_barriers() {
        for (axes, keep, out) in [
            (Some(vec![1]), 1, batch(&[1, 4, 4])),
            (Some(vec![0]), 0, vec![Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(4)]),
            (None, 1, vec![Dim::Fixed(1); 4]),
            (None, 0, vec![]),
        ] {
            let mut attrs = vec![("keepdims", int(keep))];
            attrs.extend(axes.as_ref().map(|a| ("axes", ints(a))));
            let (t, y) = one("ReduceMean", &[3, 4, 4], &attrs);
            assert_eq!(t.shape(y), out, "{axes:?} keepdims={keep}");
            assert!(all_fixed(&t.spec(0), "reduces over the channel or batch axis"), "{axes:?}");
        }
        let (t, y) = one("ReduceMax", &[3, 4, 4], &[("noop_with_empty_axes", int(1))]);
        assert_eq!(t.shape(y), batch(&[3, 4, 4]));
    }

    #[test]
    fn reductions_reject_bad_or_computed_axes() {
        let (t, _) = one("ReduceMean", &[3, 4, 4], &[("axes", ints(&[4]))]);
        assert!(t.err().contains("axis 4 is out of range for rank 4"), "{}", t.err());
        let mut t = T::opset(18);
        let x = t.input(batch(&[3, 4, 4]));
        let axes = t.input(vec![Dim::Fixed(1)]);
        t.op("ReduceMean", &[x, axes], &[]);
        assert!(t.err().contains("axes (input 1) must be a constant"), "{}", t.err());
    }
}
