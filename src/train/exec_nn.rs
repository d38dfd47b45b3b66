//! Op table, part 2: convolution, normalisation, pooling, reductions, linear
//! algebra and layout ops (see [`super::exec`] for the table itself).
use super::exec::{OpCx, OpFn};
use std::collections::HashMap;
use tch::{Kind, Tensor};

fn e(err: tch::TchError) -> String {
    err.to_string()
}

fn norm(axis: i64, r: i64) -> Result<i64, String> {
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    Ok(a)
}

pub(super) fn register(t: &mut HashMap<&'static str, OpFn>) {
    t.insert("Conv", conv);
    t.insert("ConvTranspose", conv_transpose);
    t.insert("BatchNormalization", batch_norm);
    t.insert("MaxPool", |c| pool(c, true));
    t.insert("AveragePool", |c| pool(c, false));
    t.insert("GlobalAveragePool", |c| {
        let x = c.x(0)?;
        let dims: Vec<i64> = (2..x.dim() as i64).collect();
        Ok(vec![x.f_mean_dim(dims.as_slice(), true, None::<Kind>).map_err(e)?])
    });
    t.insert("GlobalMaxPool", |c| {
        let x = c.x(0)?;
        let dims: Vec<i64> = (2..x.dim() as i64).collect();
        Ok(vec![x.f_amax(dims.as_slice(), true).map_err(e)?])
    });
    t.insert("ReduceMean", |c| reduce(c, true));
    t.insert("ReduceMax", |c| reduce(c, false));
    t.insert("Gemm", gemm);
    t.insert("MatMul", |c| Ok(vec![c.full(c.x_low(0)?.f_matmul(&c.x_low(1)?).map_err(e)?)?]));
    t.insert("Flatten", |c| {
        let x = c.x(0)?;
        let axis = c.node.attr_int("axis", 1)?;
        let r = x.dim() as i64;
        let axis = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&axis) {
            return Err(format!("axis {axis} is out of range for rank {r}"));
        }
        let s = x.size();
        let outer: i64 = s[..axis as usize].iter().product();
        let inner: i64 = s[axis as usize..].iter().product();
        Ok(vec![x.f_reshape([outer, inner]).map_err(e)?])
    });
    t.insert("Reshape", |c| {
        let x = c.x(0)?;
        let mut shape = c.ints(1, "shape")?;
        if c.node.attr_int("allowzero", 0)? == 0 {
            for (i, d) in shape.iter_mut().enumerate() {
                if *d == 0 {
                    *d = *x
                        .size()
                        .get(i)
                        .ok_or("a 0 in the target shape has no input dim to copy")?;
                }
            }
        }
        Ok(vec![x.f_reshape(&shape).map_err(e)?])
    });
    t.insert("Transpose", |c| {
        let x = c.x(0)?;
        let perm = c.node.attr_ints("perm")?.unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
        Ok(vec![x.f_permute(&perm).map_err(e)?])
    });
    t.insert("Concat", |c| {
        let xs: Vec<&Tensor> = c.inputs.iter().flatten().copied().collect();
        let r = xs.first().ok_or("Concat without inputs")?.dim() as i64;
        Ok(vec![Tensor::f_cat(&xs, norm(c.node.attr_int("axis", 0)?, r)?).map_err(e)?])
    });
    t.insert("Split", split);
    t.insert("Slice", slice);
    t.insert("Pad", pad);
    t.insert("Squeeze", |c| {
        let x = c.x(0)?;
        let r = x.dim() as i64;
        let axes = match if c.opset >= 13 {
            c.opt(1).map(|_| c.ints(1, "axes")).transpose()?
        } else {
            c.node.attr_ints("axes")?
        } {
            Some(a) => a.into_iter().map(|a| norm(a, r)).collect::<Result<Vec<_>, _>>()?,
            None => x
                .size()
                .iter()
                .enumerate()
                .filter(|(_, &d)| d == 1)
                .map(|(i, _)| i as i64)
                .collect(),
        };
        let shape: Vec<i64> = x
            .size()
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(&(*i as i64)))
            .map(|(_, &d)| d)
            .collect();
        Ok(vec![x.f_reshape(&shape).map_err(e)?])
    });
    t.insert("Unsqueeze", |c| {
        let x = c.x(0)?;
        let axes = if c.opset >= 13 {
            c.ints(1, "axes")?
        } else {
            c.node.attr_ints("axes")?.ok_or("Unsqueeze needs 'axes'")?
        };
        let r = x.dim() as i64 + axes.len() as i64;
        let mut axes = axes.into_iter().map(|a| norm(a, r)).collect::<Result<Vec<_>, _>>()?;
        axes.sort_unstable();
        let mut y = x.shallow_clone();
        for a in axes {
            y = y.f_unsqueeze(a).map_err(e)?;
        }
        Ok(vec![y])
    });
}

/// Explicit pads `[begins.., ends..]` for `spatial` dims, resolving `auto_pad`.
fn pads(
    c: &OpCx,
    x: &Tensor,
    kernel: &[i64],
    strides: &[i64],
    dil: &[i64],
) -> Result<Vec<i64>, String> {
    let n = kernel.len();
    let auto = c.node.attr_str("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => {
            let p = c.node.attr_ints("pads")?.unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n {
                return Err(format!("'pads' has {} entries for {n} spatial dims", p.len()));
            }
            Ok(p)
        }
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let size = x.size();
            let mut p = vec![0; 2 * n];
            for i in 0..n {
                let inp = size[2 + i];
                let out = (inp + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - inp).max(0);
                let small = total / 2;
                let (b, en) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[i] = b;
                p[n + i] = en;
            }
            Ok(p)
        }
        other => Err(format!("auto_pad '{other}' is not supported")),
    }
}

/// torch's `pad` list (last dim first) from ONNX `[begins.., ends..]` over the last `n` dims.
fn torch_pad(p: &[i64]) -> Vec<i64> {
    let n = p.len() / 2;
    (0..n).rev().flat_map(|i| [p[i], p[n + i]]).collect()
}

/// Splits pads into a symmetric part torch can take, padding explicitly first when they are asymmetric.
fn sym_or_pad(
    x: &Tensor,
    p: &[i64],
    fill: f64,
    limit: Option<&[i64]>,
) -> Result<(Tensor, Vec<i64>), String> {
    let n = p.len() / 2;
    let sym = (0..n).all(|i| p[i] == p[n + i] && limit.is_none_or(|k| p[i] <= k[i] / 2));
    if sym {
        return Ok((x.shallow_clone(), p[..n].to_vec()));
    }
    Ok((x.f_pad(torch_pad(p).as_slice(), "constant", fill).map_err(e)?, vec![0; n]))
}

/// Strides, dilations and pads of a conv.
type Geometry = (Vec<i64>, Vec<i64>, Vec<i64>);

fn conv_geometry(c: &OpCx, x: &Tensor, w: &Tensor) -> Result<Geometry, String> {
    let n = w.dim().saturating_sub(2);
    let kernel = c.node.attr_ints("kernel_shape")?.unwrap_or_else(|| w.size()[2..].to_vec());
    let strides = c.node.attr_ints("strides")?.unwrap_or_else(|| vec![1; n]);
    let dil = c.node.attr_ints("dilations")?.unwrap_or_else(|| vec![1; n]);
    let p = pads(c, x, &kernel, &strides, &dil)?;
    Ok((strides, dil, p))
}

fn conv(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let (x, w) = (c.x_low(0)?, c.x_low(1)?);
    let (strides, dil, p) = conv_geometry(c, &x, &w)?;
    let (x, padding) = sym_or_pad(&x, &p, 0.0, None)?;
    let group = c.node.attr_int("group", 1)?;
    let y = x
        .f_convolution(
            &w,
            c.opt_low(2)?.as_ref(),
            strides.as_slice(),
            padding.as_slice(),
            dil.as_slice(),
            false,
            vec![0i64; strides.len()].as_slice(),
            group,
        )
        .map_err(e)?;
    Ok(vec![c.full(y)?])
}

fn conv_transpose(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let (x, w) = (c.x_low(0)?, c.x_low(1)?);
    let n = w.dim().saturating_sub(2);
    if c.node.attr("output_shape").is_some() {
        return Err(
            "ConvTranspose with 'output_shape' is not supported; give 'pads' instead".into()
        );
    }
    let strides = c.node.attr_ints("strides")?.unwrap_or_else(|| vec![1; n]);
    let dil = c.node.attr_ints("dilations")?.unwrap_or_else(|| vec![1; n]);
    let p = c.node.attr_ints("pads")?.unwrap_or_else(|| vec![0; 2 * n]);
    if p.len() != 2 * n
        || (0..n).any(|i| p[i] != p[n + i])
        || c.node.attr_str("auto_pad", "NOTSET")? != "NOTSET"
    {
        return Err("ConvTranspose supports symmetric explicit 'pads' only".into());
    }
    let op = c.node.attr_ints("output_padding")?.unwrap_or_else(|| vec![0; n]);
    let group = c.node.attr_int("group", 1)?;
    Ok(vec![c.full(
        x.f_convolution(
            &w,
            c.opt_low(2)?.as_ref(),
            strides.as_slice(),
            &p[..n],
            dil.as_slice(),
            true,
            op.as_slice(),
            group,
        )
        .map_err(e)?,
    )?])
}

fn batch_norm(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let (scale, bias, mean, var) = (c.x(1)?, c.x(2)?, c.x(3)?, c.x(4)?);
    let eps = c.node.attr_float("epsilon", 1e-5)? as f64;
    let momentum = match c.bn_momentum {
        Some(m) => m,
        None => c.node.attr_float("momentum", 0.9)? as f64,
    };
    let y = x
        .f_batch_norm(
            Some(scale),
            Some(bias),
            Some(mean),
            Some(var),
            c.train,
            1.0 - momentum,
            eps,
            true,
        )
        .map_err(e)?;
    let mut out = vec![y];
    for extra in c.node.outputs.iter().skip(1) {
        if extra.is_some() {
            out.push(if out.len() == 1 { mean.shallow_clone() } else { var.shallow_clone() });
        }
    }
    Ok(out)
}

fn pool(c: &OpCx, max: bool) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    if x.dim() != 4 {
        return Err(format!(
            "only 2-D pooling (rank-4 input) is supported, the input has rank {}",
            x.dim()
        ));
    }
    let kernel = c.node.attr_ints("kernel_shape")?.ok_or("'kernel_shape' is required")?;
    let strides = c.node.attr_ints("strides")?.unwrap_or_else(|| vec![1; 2]);
    let dil = c.node.attr_ints("dilations")?.unwrap_or_else(|| vec![1; 2]);
    let p = pads(c, x, &kernel, &strides, &dil)?;
    let ceil = c.node.attr_int("ceil_mode", 0)? != 0;
    if max {
        let (x, padding) = sym_or_pad(x, &p, f64::NEG_INFINITY, Some(&kernel))?;
        return Ok(vec![x
            .f_max_pool2d(
                kernel.as_slice(),
                strides.as_slice(),
                padding.as_slice(),
                dil.as_slice(),
                ceil,
            )
            .map_err(e)?]);
    }
    if dil.iter().any(|&d| d != 1) {
        return Err("AveragePool with dilations is not supported".into());
    }
    let include = c.node.attr_int("count_include_pad", 0)? != 0;
    let sym = (0..2).all(|i| p[i] == p[2 + i] && p[i] <= kernel[i] / 2);
    let (x, padding) = if sym {
        (x.shallow_clone(), p[..2].to_vec())
    } else if include && !ceil {
        (x.f_pad(torch_pad(&p).as_slice(), "constant", 0.0).map_err(e)?, vec![0, 0])
    } else {
        return Err(format!(
            "AveragePool with asymmetric pads {p:?} needs count_include_pad=1 and ceil_mode=0"
        ));
    };
    Ok(vec![x
        .f_avg_pool2d(
            kernel.as_slice(),
            strides.as_slice(),
            padding.as_slice(),
            ceil,
            include,
            None::<i64>,
        )
        .map_err(e)?])
}

fn reduce(c: &OpCx, mean: bool) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let r = x.dim() as i64;
    let keep = c.node.attr_int("keepdims", 1)? != 0;
    let since = 18; // axes moved from attribute to input in opset 18
    let axes = match c.axes(since, 1)? {
        Some(a) if !a.is_empty() => {
            a.into_iter().map(|a| norm(a, r)).collect::<Result<Vec<_>, _>>()?
        }
        _ if c.node.attr_int("noop_with_empty_axes", 0)? != 0 => {
            return Ok(vec![x.shallow_clone()])
        }
        _ => (0..r).collect(),
    };
    Ok(vec![if mean {
        x.f_mean_dim(axes.as_slice(), keep, None::<Kind>)
    } else {
        x.f_amax(axes.as_slice(), keep)
    }
    .map_err(e)?])
}

fn gemm(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let mut a = c.x_low(0)?;
    let mut b = c.x_low(1)?;
    if c.node.attr_int("transA", 0)? != 0 {
        a = a.f_tr().map_err(e)?;
    }
    if c.node.attr_int("transB", 0)? != 0 {
        b = b.f_tr().map_err(e)?;
    }
    let alpha = c.node.attr_float("alpha", 1.0)? as f64;
    let beta = c.node.attr_float("beta", 1.0)? as f64;
    let y = match c.opt_low(2)? {
        Some(bias) if beta != 0.0 => bias.f_addmm(&a, &b).map_err(e).map(|y| {
            if alpha == 1.0 && beta == 1.0 {
                y
            } else {
                a.matmul(&b) * alpha + bias * beta
            }
        })?,
        _ => a.f_matmul(&b).map_err(e)? * alpha,
    };
    Ok(vec![c.full(y)?])
}

fn split(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let axis = norm(c.node.attr_int("axis", 0)?, x.dim() as i64)?;
    let n_out = c.node.outputs.len() as i64;
    let sizes = if c.opset >= 13 && c.opt(1).is_some() {
        c.ints(1, "split")?
    } else if let Some(s) = c.node.attr_ints("split")?.filter(|_| c.opset < 13) {
        s
    } else {
        let d = x.size()[axis as usize];
        let chunk = (d + n_out - 1) / n_out;
        (0..n_out).map(|i| (d - i * chunk).clamp(0, chunk)).collect()
    };
    x.f_split_with_sizes(&sizes, axis).map_err(e)
}

fn slice(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let r = x.dim() as i64;
    let (starts, ends, axes, steps) = if c.opset >= 10 {
        let starts = c.ints(1, "starts")?;
        let ends = c.ints(2, "ends")?;
        let axes = if c.opt(3).is_some() {
            c.ints(3, "axes")?
        } else {
            (0..starts.len() as i64).collect()
        };
        let steps = if c.opt(4).is_some() { c.ints(4, "steps")? } else { vec![1; starts.len()] };
        (starts, ends, axes, steps)
    } else {
        let starts = c.node.attr_ints("starts")?.ok_or("'starts' is required")?;
        let ends = c.node.attr_ints("ends")?.ok_or("'ends' is required")?;
        let axes = c.node.attr_ints("axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let n = starts.len();
        (starts, ends, axes, vec![1; n])
    };
    let mut y = x.shallow_clone();
    for (k, &a) in axes.iter().enumerate() {
        let a = norm(a, r)?;
        let d = y.size()[a as usize];
        let step = *steps.get(k).ok_or("steps and axes differ in length")?;
        let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, en) = (
            fix(*starts.get(k).ok_or("starts too short")?),
            fix(*ends.get(k).ok_or("ends too short")?),
        );
        if step > 0 {
            let (s, en) = (s.clamp(0, d), en.clamp(0, d));
            y = y.f_slice(a, s, en.max(s), step).map_err(e)?;
        } else if step < 0 {
            let (s, en) = (s.clamp(-1, d - 1), en.clamp(-1, d - 1));
            let idx: Vec<i64> = (0..).map(|i| s + i * step).take_while(|&i| i > en).collect();
            y = y.f_index_select(a, &Tensor::from_slice(&idx)).map_err(e)?;
        } else {
            return Err("a Slice step is 0".into());
        }
    }
    Ok(vec![y])
}

fn pad(c: &OpCx) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let r = x.dim() as i64;
    let mode = c.node.attr_str("mode", "constant")?;
    let (p, value) = if c.opset >= 11 {
        let p = c.ints(1, "pads")?;
        let value = c.scalar(2)?.unwrap_or(0.0);
        match c.opt(3) {
            None => (p, value),
            Some(_) => {
                // Explicit axes: expand to every axis.
                let axes = c.ints(3, "axes")?;
                let n = axes.len();
                let mut full = vec![0; 2 * r as usize];
                for (k, &a) in axes.iter().enumerate() {
                    let a = norm(a, r)? as usize;
                    full[a] = p[k];
                    full[r as usize + a] = p[n + k];
                }
                (full, value)
            }
        }
    } else {
        (
            c.node.attr_ints("pads")?.ok_or("'pads' is required")?,
            c.node.attr_float("value", 0.0)? as f64,
        )
    };
    if p.len() != 2 * r as usize {
        return Err(format!("'pads' has {} entries for rank {r}", p.len()));
    }
    let mut tp = torch_pad(&p);
    while tp.len() > 2 && tp[tp.len() - 2..].iter().all(|&v| v == 0) {
        tp.truncate(tp.len() - 2);
    }
    let y = match mode.as_str() {
        "constant" => x.f_pad(tp.as_slice(), "constant", value),
        "reflect" => x.f_pad(tp.as_slice(), "reflect", None::<f64>),
        "edge" => x.f_pad(tp.as_slice(), "replicate", None::<f64>),
        other => return Err(format!("Pad mode '{other}' is not supported")),
    };
    Ok(vec![y.map_err(e)?])
}
