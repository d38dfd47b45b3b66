//! SGD with momentum, Nesterov and (coupled) weight decay, PyTorch semantics:
//! `g = grad + wd·p; b = μ·b + g; p -= lr·(nesterov ? g + μ·b : b)`.
//! Momentum buffers are named after the parameters so checkpoints hold them.
//!
//! Flat storage (PyTorch's foreach/fused SGD by other means; tch has no foreach
//! ops): when every parameter is a dense fp32 tensor on one device, contiguous or
//! channels-last, the parameters, their gradients and the momentum buffers are
//! re-seated as views of three flat tensors (`set_data`), so a step is ~7 kernel
//! launches for the whole network instead of ~9 per parameter, and zero_grad is
//! one. Autograd accumulates into the bound gradient views in place; a gradient
//! that was replaced behind the optimizer's back is re-bound (values copied).
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

pub struct Sgd {
    pub cfg: SgdConfig,
    /// (VarStore name, parameter, momentum buffer once allocated).
    slots: Vec<(String, Tensor, Option<Tensor>)>,
    scaler: Option<LossScale>,
    flat: Option<Flat>,
}

/// Flat storage of parameters, gradients and momentum (see the module docs).
struct Flat {
    /// Per parameter: offset and length in the flat tensors, logical shape, channels-last.
    layout: Vec<(i64, i64, Vec<i64>, bool)>,
    params: Tensor,
    grads: Tensor,
    /// Data pointer of each bound gradient (None until bound).
    bound: Vec<Option<usize>>,
    mom: Tensor,
    /// Scratch for `g + wd·p` and the Nesterov direction.
    d: Tensor,
    n: Tensor,
    /// 0-dim device scalars: weight decay, momentum, -lr.
    wd: Tensor,
    mu: Tensor,
    neg_lr: Tensor,
}

fn is_channels_last(t: &Tensor) -> bool {
    let (sz, st) = (t.size(), t.stride());
    sz.len() == 4 && st == [sz[1] * sz[2] * sz[3], 1, sz[3] * sz[1], sz[1]] && sz[1] > 1
}

/// The view of `flat[off..off+n]` with the logical `shape`, in NHWC memory order when `cl`.
fn view_of(flat: &Tensor, off: i64, n: i64, shape: &[i64], cl: bool) -> Tensor {
    let v = flat.narrow(0, off, n);
    if cl {
        v.view([shape[0], shape[2], shape[3], shape[1]]).permute([0, 3, 1, 2])
    } else {
        v.view(shape)
    }
}

impl Flat {
    /// Re-seats `params` in flat storage; None (per-parameter updates) unless all are
    /// dense fp32 on one device and contiguous or channels-last.
    fn new(params: &[(String, Tensor, Option<Tensor>)], cfg: &SgdConfig) -> Option<Flat> {
        let first = params.first()?;
        let device: Device = first.1.device();
        let mut layout = Vec::with_capacity(params.len());
        let mut off = 0i64;
        for (_, p, _) in params {
            if p.kind() != Kind::Float || p.device() != device || p.is_sparse() {
                return None;
            }
            let cl = is_channels_last(p);
            if !cl && !p.is_contiguous() {
                return None;
            }
            let n = p.numel() as i64;
            layout.push((off, n, p.size(), cl));
            off += n;
        }
        let opts = (Kind::Float, device);
        let flat_p = Tensor::zeros([off], opts);
        tch::no_grad(|| {
            for ((_, p, _), (o, n, shape, cl)) in params.iter().zip(&layout) {
                let v = view_of(&flat_p, *o, *n, shape, *cl);
                v.shallow_clone().copy_(p);
                let mut p = p.shallow_clone();
                p.set_data(&v);
            }
        });
        let scalar = |x: f64| Tensor::from(x as f32).to_device(device);
        Some(Flat {
            bound: vec![None; layout.len()],
            layout,
            params: flat_p,
            grads: Tensor::zeros([off], opts),
            mom: Tensor::zeros([off], opts),
            d: Tensor::zeros([off], opts),
            n: Tensor::zeros([off], opts),
            wd: scalar(cfg.weight_decay),
            mu: scalar(cfg.momentum),
            neg_lr: scalar(0.0),
        })
    }
    fn view(&self, flat: &Tensor, i: usize) -> Tensor {
        let (o, n, shape, cl) = &self.layout[i];
        view_of(flat, *o, *n, shape, *cl)
    }
    /// Binds every parameter's gradient to its view of the flat gradient (copying the
    /// values of any gradient not already there); false if some gradient is undefined.
    fn bind(&mut self, slots: &[(String, Tensor, Option<Tensor>)]) -> bool {
        for (i, (_, p, _)) in slots.iter().enumerate() {
            let g = p.grad();
            if !g.defined() {
                return false;
            }
            if self.bound[i] != Some(g.data_ptr() as usize) {
                let v = self.view(&self.grads, i);
                tch::no_grad(|| {
                    v.shallow_clone().copy_(&g);
                    let mut g = g.shallow_clone();
                    g.set_data(&v);
                });
                self.bound[i] = Some(g.data_ptr() as usize);
            }
        }
        true
    }
}

/// Dynamic loss scaling for fp16 training (PyTorch GradScaler's rule): the loss is
/// multiplied by `scale` before backward; a step whose gradients overflow is skipped
/// and halves the scale; 2000 good steps in a row double it.
#[derive(Clone, Debug, PartialEq)]
pub struct LossScale {
    pub scale: f64,
    pub good: usize,
    pub skipped: usize,
}

impl LossScale {
    pub const INIT: f64 = 65536.0;
    pub const GROWTH_INTERVAL: usize = 2000;
    /// Name of the loss-scaling state among [`Sgd::buffers`] (a `.` never occurs in
    /// VarStore names, so it cannot clash with a parameter's buffer).
    pub const BUFFER: &'static str = ".loss_scale";
}

impl Sgd {
    pub fn new(params: Vec<(String, Tensor)>, cfg: SgdConfig) -> Sgd {
        let mut slots: Vec<(String, Tensor, Option<Tensor>)> =
            params.into_iter().map(|(n, p)| (n, p, None)).collect();
        let flat = Flat::new(&slots, &cfg);
        if let Some(f) = &flat {
            if cfg.momentum != 0.0 {
                // Zero buffers: μ·0 + d = d, exactly PyTorch's lazily copied first buffer.
                for (i, s) in slots.iter_mut().enumerate() {
                    s.2 = Some(f.view(&f.mom, i));
                }
            }
        }
        Sgd { cfg, slots, scaler: None, flat }
    }
    /// Per-parameter updates only (no flat storage): the reference path of the tests.
    #[cfg(test)]
    fn new_unfused(params: Vec<(String, Tensor)>, cfg: SgdConfig) -> Sgd {
        Sgd {
            cfg,
            slots: params.into_iter().map(|(n, p)| (n, p, None)).collect(),
            scaler: None,
            flat: None,
        }
    }
    /// Whether parameters, gradients and momentum live in flat storage.
    pub fn is_flat(&self) -> bool {
        self.flat.is_some()
    }
    /// Turns on dynamic loss scaling (for fp16 mixed precision).
    pub fn with_loss_scaling(mut self, on: bool) -> Sgd {
        self.scaler = on.then_some(LossScale { scale: LossScale::INIT, good: 0, skipped: 0 });
        self
    }
    /// The loss-scaling state, when on.
    pub fn loss_scale(&self) -> Option<&LossScale> {
        self.scaler.as_ref()
    }
    /// Backward of `loss`, scaled when loss scaling is on.
    pub fn backward(&self, loss: &Tensor) -> Result<(), tch::TchError> {
        match &self.scaler {
            Some(s) => (loss * s.scale).f_backward(),
            None => loss.f_backward(),
        }
    }
    /// With loss scaling: unscales the gradients; false (and the scale halved) when they overflowed.
    fn unscale(&mut self, flat: bool) -> bool {
        let Some(s) = self.scaler.as_mut() else { return true };
        let grads: Vec<Tensor> = match (&self.flat, flat) {
            (Some(f), true) => vec![f.grads.shallow_clone()],
            _ => self.slots.iter().map(|(_, p, _)| p.grad()).filter(|g| g.defined()).collect(),
        };
        let finite = tch::no_grad(|| {
            grads
                .iter()
                .map(|g| g.abs().sum(tch::Kind::Float))
                .fold(Tensor::from(0f32), |a, b| a + b)
                .double_value(&[])
                .is_finite()
        });
        if !finite {
            s.scale /= 2.0;
            s.good = 0;
            s.skipped += 1;
            return false;
        }
        let inv = 1.0 / s.scale;
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_scalar_(inv);
            }
        });
        s.good += 1;
        if s.good % LossScale::GROWTH_INTERVAL == 0 {
            s.scale *= 2.0;
        }
        true
    }
    /// The gradients to average across data-parallel ranks, in place: the flat gradient
    /// (bound to every parameter first) with flat storage, else each defined gradient.
    pub fn grad_buffers(&mut self) -> Vec<Tensor> {
        if let Some(f) = &mut self.flat {
            if f.bind(&self.slots) {
                return vec![f.grads.shallow_clone()];
            }
        }
        self.slots.iter().map(|(_, p, _)| p.grad()).filter(|g| g.defined()).collect()
    }
    pub fn zero_grad(&mut self) {
        if let Some(f) = &mut self.flat {
            if f.bound.iter().all(|b| b.is_some()) {
                let _ = f.grads.zero_();
                // A gradient re-seated elsewhere since the last step is zeroed too.
                for (i, (_, p, _)) in self.slots.iter().enumerate() {
                    let mut g = p.grad();
                    if g.defined() && f.bound[i] != Some(g.data_ptr() as usize) {
                        let _ = g.detach_().zero_();
                    }
                }
                return;
            }
        }
        for (_, p, _) in &mut self.slots {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
    /// One update with learning rate `lr` (skipped when loss-scaled gradients overflowed).
    pub fn step(&mut self, lr: f64) {
        let flat = match &mut self.flat {
            Some(f) => f.bind(&self.slots),
            None => false,
        };
        if !self.unscale(flat) {
            return;
        }
        let c = self.cfg.clone();
        if flat {
            let f = self.flat.as_mut().expect("flat");
            tch::no_grad(|| {
                let _ = f.neg_lr.fill_(-lr);
                let d = if c.weight_decay != 0.0 {
                    f.grads.addcmul_out(&f.d, &f.params, &f.wd)
                } else {
                    f.grads.shallow_clone()
                };
                let upd = if c.momentum != 0.0 {
                    let _ = f.mom.g_mul_scalar_(c.momentum).g_add_(&d);
                    if c.nesterov {
                        d.addcmul_out(&f.n, &f.mom, &f.mu)
                    } else {
                        f.mom.shallow_clone()
                    }
                } else {
                    d
                };
                let _ = f.params.addcmul_(&upd, &f.neg_lr);
            });
            return;
        }
        tch::no_grad(|| {
            for (_, p, buf) in &mut self.slots {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut d = if c.weight_decay != 0.0 { &g + &*p * c.weight_decay } else { g };
                if c.momentum != 0.0 {
                    let b = match buf {
                        Some(b) => {
                            let _ = b.g_mul_scalar_(c.momentum).g_add_(&d);
                            b
                        }
                        None => buf.insert(d.detach().copy()),
                    };
                    d = if c.nesterov { d + &*b * c.momentum } else { b.shallow_clone() };
                }
                let _ = p.g_add_(&(d * (-lr)));
            }
        });
    }
    /// Momentum buffers by parameter name, and the loss-scaling state when on as
    /// [`LossScale::BUFFER`] = [scale, good steps, skipped steps] (for checkpoints).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .slots
            .iter()
            .filter_map(|(n, _, b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone())))
            .collect();
        if let Some(s) = &self.scaler {
            v.push((
                LossScale::BUFFER.into(),
                Tensor::from_slice(&[s.scale, s.good as f64, s.skipped as f64]),
            ));
        }
        v
    }
    /// Restores momentum buffers by parameter name; unknown names are ignored.
    pub fn set_buffers(&mut self, bufs: Vec<(String, Tensor)>) {
        for (n, t) in bufs {
            if n == LossScale::BUFFER {
                if let (Some(s), Ok(v)) = (
                    self.scaler.as_mut(),
                    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)),
                ) {
                    if let [scale, good, skipped] = v[..] {
                        *s = LossScale { scale, good: good as usize, skipped: skipped as usize };
                    }
                }
                continue;
            }
            if let Some(slot) = self.slots.iter_mut().find(|s| s.0 == n) {
                match &slot.2 {
                    // Flat storage: copy into the buffer's view.
                    Some(b) if self.flat.is_some() => {
                        tch::no_grad(|| b.shallow_clone().copy_(&t));
                    }
                    _ => slot.2 = Some(t.to_device(slot.1.device())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cl: bool) -> Vec<(String, Tensor)> {
        tch::manual_seed(7);
        let mut w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        if cl {
            w = w.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        }
        vec![
            ("w".into(), w.set_requires_grad(true)),
            ("b".into(), Tensor::randn([4], (Kind::Float, Device::Cpu)).set_requires_grad(true)),
            (
                "fc".into(),
                Tensor::randn([2, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true),
            ),
        ]
    }

    fn loss(p: &[(String, Tensor)], x: &Tensor) -> Tensor {
        let y = x.conv2d(&p[0].1, Some(&p[1].1), [1, 1], [1, 1], [1, 1], 1).relu().mean_dim(
            &[2i64, 3][..],
            false,
            Kind::Float,
        );
        y.matmul(&p[2].1.tr()).pow_tensor_scalar(2).sum(Kind::Float)
    }

    /// The fp16 loss-scaling state travels with the momentum buffers, so a resumed
    /// run continues at the scale it reached.
    #[test]
    fn loss_scale_round_trips_through_buffers() {
        let cfg = SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        let mut a = Sgd::new(params(false), cfg.clone()).with_loss_scaling(true);
        a.scaler = Some(LossScale { scale: 1024.0, good: 17, skipped: 6 });
        let bufs = a.buffers();
        assert!(bufs.iter().any(|(n, _)| n == LossScale::BUFFER));
        let mut b = Sgd::new(params(false), cfg.clone()).with_loss_scaling(true);
        assert_eq!(b.loss_scale().unwrap().scale, LossScale::INIT);
        b.set_buffers(bufs.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect());
        assert_eq!(b.loss_scale(), a.loss_scale());
        // Without loss scaling the entry is ignored (and none is written).
        let mut c = Sgd::new(params(false), cfg);
        c.set_buffers(bufs);
        assert!(
            c.loss_scale().is_none() && !c.buffers().iter().any(|(n, _)| n == LossScale::BUFFER)
        );
    }

    /// Flat storage computes exactly the per-parameter reference (PyTorch's SGD
    /// formula), for contiguous and channels-last weights, with and without Nesterov;
    /// the parameters stay the caller's tensors and keep their layout.
    #[test]
    fn flat_sgd_equals_per_parameter_sgd() {
        for (cl, nesterov, wd) in
            [(false, false, 1e-2), (false, true, 1e-2), (true, true, 5e-4), (false, false, 0.0)]
        {
            let cfg = SgdConfig { momentum: 0.9, nesterov, weight_decay: wd };
            let pa = params(cl);
            // Deep copies with the same layout (the global RNG is shared by parallel tests).
            let pb: Vec<(String, Tensor)> = pa
                .iter()
                .map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true)))
                .collect();
            assert_eq!(pb[0].1.stride(), pa[0].1.stride());
            let mut a = Sgd::new(
                pa.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
                cfg.clone(),
            );
            let mut b = Sgd::new_unfused(
                pb.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
                cfg.clone(),
            );
            assert!(a.is_flat() && !b.is_flat());
            assert_eq!(is_channels_last(&pa[0].1), cl, "layout kept");
            let x = Tensor::randn([2, 3, 5, 5], (Kind::Float, Device::Cpu));
            for step in 0..4 {
                a.zero_grad();
                b.zero_grad();
                loss(&pa, &x).backward();
                loss(&pb, &x).backward();
                let lr = 0.1 / (step + 1) as f64;
                a.step(lr);
                b.step(lr);
                for ((n, ta), (_, tb)) in pa.iter().zip(&pb) {
                    // Same arithmetic up to fused-multiply-add rounding.
                    let d = (ta - tb).abs().max().double_value(&[])
                        / tb.abs().max().double_value(&[]).max(1.0);
                    assert!(
                        d < 1e-5,
                        "{n} step {step} (cl {cl}, nesterov {nesterov}, wd {wd}): {d}"
                    );
                }
            }
            // Buffers round-trip by name.
            let bufs = a.buffers();
            assert_eq!(bufs.len(), 3);
            for ((n, x), (_, y)) in bufs.iter().zip(b.buffers()) {
                let scale = y.abs().max().double_value(&[]).max(1.0);
                assert!(
                    (x - &y).abs().max().double_value(&[]) < 1e-5 * scale,
                    "buffer {n} (cl {cl}, nesterov {nesterov}, wd {wd})"
                );
            }
            assert!(
                f64::try_from(pa[0].1.grad().abs().sum(Kind::Float)).unwrap() > 0.0,
                "grads bound and visible"
            );
            a.zero_grad();
            assert_eq!(
                f64::try_from(pa[0].1.grad().abs().sum(Kind::Float)).unwrap(),
                0.0,
                "zero_grad through the flat gradient"
            );
        }
    }
}
