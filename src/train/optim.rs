//! SGD with momentum, Nesterov and (coupled) weight decay, PyTorch semantics:
//! `g = grad + wd·p; b = μ·b + g; p -= lr·(nesterov ? g + μ·b : b)`.
//! Momentum buffers are named after the parameters so checkpoints hold them.
use tch::Tensor;

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
}

impl Sgd {
    pub fn new(params: Vec<(String, Tensor)>, cfg: SgdConfig) -> Sgd {
        Sgd { cfg, slots: params.into_iter().map(|(n, p)| (n, p, None)).collect(), scaler: None }
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
    fn unscale(&mut self) -> bool {
        let Some(s) = self.scaler.as_mut() else { return true };
        let grads: Vec<Tensor> = self.slots.iter().map(|(_, p, _)| p.grad()).filter(|g| g.defined()).collect();
        let finite = tch::no_grad(|| grads.iter().map(|g| g.abs().sum(tch::Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b).double_value(&[]).is_finite());
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
        if s.good.is_multiple_of(LossScale::GROWTH_INTERVAL) {
            s.scale *= 2.0;
        }
        true
    }
    pub fn zero_grad(&mut self) {
        for (_, p, _) in &mut self.slots {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
    /// One update with learning rate `lr` (skipped when loss-scaled gradients overflowed).
    pub fn step(&mut self, lr: f64) {
        if !self.unscale() {
            return;
        }
        let c = self.cfg.clone();
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
    /// Momentum buffers by parameter name (for checkpoints).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.slots.iter().filter_map(|(n, _, b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone()))).collect()
    }
    /// Restores momentum buffers by parameter name; unknown names are ignored.
    pub fn set_buffers(&mut self, bufs: Vec<(String, Tensor)>) {
        for (n, t) in bufs {
            if let Some(slot) = self.slots.iter_mut().find(|s| s.0 == n) {
                slot.2 = Some(t.to_device(slot.1.device()));
            }
        }
    }
}
