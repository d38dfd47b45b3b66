//! Building blocks: MLPs with two hidden layers, and an Adam optimiser whose
//! state (moments, step) is plain tensors, so checkpoints resume exactly.
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Kind, Tensor};

/// Seeds libtorch's process-wide generator with `seed` and holds it until the returned
/// guard drops: networks initialised in several threads at once (`rlal bench agent
/// --jobs N`) each get their seed's weights, not draws interleaved with another
/// thread's. Hold the guard while the networks are built.
pub fn seeded(seed: i64) -> MutexGuard<'static, ()> {
    static GENERATOR: Mutex<()> = Mutex::new(());
    let guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
}

/// Hidden width of every MLP (paper: two hidden layers of 300).
pub const HIDDEN: i64 = 300;

/// in → 300 → ReLU → 300 → ReLU → out.
pub fn mlp(p: nn::Path, input: i64, out: i64) -> nn::Sequential {
    nn::seq()
        .add(nn::linear(&p / "l1", input, HIDDEN, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(&p / "l2", HIDDEN, HIDDEN, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(&p / "l3", HIDDEN, out, Default::default()))
}

/// Variables of a VarStore in name order (deterministic).
pub fn named_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Adam (Kingma & Ba) over a VarStore's variables.
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub step: i64,
    vars: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(vs: &nn::VarStore, lr: f64, betas: (f64, f64)) -> Adam {
        let vars = named_vars(vs);
        let m = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        Adam { lr, betas, eps: 1e-8, step: 0, vars, m, v }
    }
    pub fn zero_grad(&mut self) {
        for (_, t) in &mut self.vars {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }
    /// One update from the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.vars.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                self.m[i] = &self.m[i] * b1 + &g * (1.0 - b1);
                self.v[i] = &self.v[i] * b2 + &g * &g * (1.0 - b2);
                let denom = (&self.v[i] / c2).sqrt() + self.eps;
                let upd = (&self.m[i] / c1) / denom * self.lr;
                let _ = p.g_sub_(&upd);
            }
        });
    }
    /// Backward of `loss`, then a step.
    pub fn minimize(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }
    /// Named state tensors for checkpoints (`prefix.m.<var>`, `prefix.v.<var>`, `prefix.step`).
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (n, _)) in self.vars.iter().enumerate() {
            out.push((format!("{prefix}.m.{n}"), self.m[i].shallow_clone()));
            out.push((format!("{prefix}.v.{n}"), self.v[i].shallow_clone()));
        }
        out.push((format!("{prefix}.step"), Tensor::from_slice(&[self.step]).to_kind(Kind::Int64)));
        out
    }
    /// Restores from [`Adam::state`] tensors.
    pub fn restore(
        &mut self,
        prefix: &str,
        all: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), RestoreError> {
        for (i, (n, _)) in self.vars.iter().enumerate() {
            for (which, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = stored(all, format!("{prefix}.{which}.{n}"))?;
                tch::no_grad(|| slot.copy_(t));
            }
        }
        let s = stored(all, format!("{prefix}.step"))?;
        self.step = s.int64_value(&[0]);
        Ok(())
    }
}

/// Checkpoint tensors that do not fit the agent restoring them.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("checkpoint lacks {0}")]
    Missing(String),
    #[error("{key}: shape {found:?} in the checkpoint, {want:?} in the agent (another agent configuration?)")]
    Shape { key: String, found: Vec<i64>, want: Vec<i64> },
}

/// Tensor `key` of checkpoint tensors `all`.
pub fn stored(
    all: &std::collections::HashMap<String, Tensor>,
    key: String,
) -> Result<&Tensor, RestoreError> {
    all.get(&key).ok_or(RestoreError::Missing(key))
}

/// Copies every variable of `src` into `dst` (same names), optionally Polyak-averaged:
/// dst = (1 − τ)·dst + τ·src.
pub fn polyak(dst: &nn::VarStore, src: &nn::VarStore, tau: f64) {
    let s = src.variables();
    tch::no_grad(|| {
        for (n, mut d) in dst.variables() {
            if let Some(t) = s.get(&n) {
                let v = &d * (1.0 - tau) + t * tau;
                d.copy_(&v);
            }
        }
    });
}
