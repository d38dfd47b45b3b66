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
}

impl Sgd {
    pub fn new(params: Vec<(String, Tensor)>, cfg: SgdConfig) -> Sgd {
        Sgd { cfg, slots: params.into_iter().map(|(n, p)| (n, p, None)).collect() }
    }
    pub fn zero_grad(&mut self) {
        for (_, p, _) in &mut self.slots {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
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
