//! The environment model (paper §3.2.1): a learnable embedding per weight-
//! training epoch, a GRU over the embeddings of epochs 1..k giving z_k, and a
//! decoder MLP predicting the reward from (s, a, z), trained with the
//! reconstruction loss of Eq. 3. With `enabled = false` ("w/o EE") z is zero.
use super::nets::{mlp, Adam};
#[cfg(test)]
use tch::nn::RNN;
use tch::{nn, nn::Module, Device, Kind, Tensor};

pub const EMBED_DIM: i64 = 128;

pub struct EnvModel {
    pub enabled: bool,
    pub z_dim: i64,
    pub max_epochs: i64,
    pub vs: nn::VarStore,
    /// Registers (and initialises) the embeddings and GRU variables; the forward and
    /// backward run on host copies ([`Tape`]), these modules only in the reference test.
    #[cfg_attr(not(test), allow(dead_code))]
    emb: nn::Embedding,
    #[cfg_attr(not(test), allow(dead_code))]
    gru: nn::GRU,
    dec: nn::Sequential,
    pub opt: Adam,
}

impl EnvModel {
    pub fn new(
        state_dim: i64,
        z_dim: i64,
        max_epochs: usize,
        lr: f64,
        enabled: bool,
        seed: i64,
    ) -> EnvModel {
        let _generator = super::nets::seeded(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let max_epochs = max_epochs.max(1) as i64;
        let emb = nn::embedding(&root / "emb", max_epochs, EMBED_DIM, Default::default());
        let gru = nn::gru(&root / "gru", EMBED_DIM, z_dim, Default::default());
        let dec = mlp(&root / "dec", state_dim + 1 + z_dim, 1);
        let opt = Adam::new(&vs, lr, (0.9, 0.999));
        EnvModel { enabled, z_dim, max_epochs, vs, emb, gru, dec, opt }
    }

    /// z_0..z_upto as rows of a [upto+1, z_dim] tensor through libtorch's GRU and
    /// autograd: the reference that [`EnvModel::z_all`] must match.
    #[cfg(test)]
    fn z_all_autograd(&self, upto: i64) -> Tensor {
        let upto = upto.clamp(0, self.max_epochs - 1);
        let idx = Tensor::arange(upto + 1, (Kind::Int64, Device::Cpu));
        let e = self.emb.forward(&idx).unsqueeze(0);
        let (out, _) = self.gru.seq(&e);
        out.squeeze_dim(0)
    }

    /// The GRU's and the embeddings' parameters (detached).
    fn gru_params(&self) -> GruParams {
        let vars = self.vs.variables();
        let get = |n: &str| vars[n].detach();
        GruParams {
            w_ih: get("gru.weight_ih_l0"),
            b_ih: get("gru.bias_ih_l0"),
            w_hh: host(&vars["gru.weight_hh_l0"]),
            b_hh: host(&vars["gru.bias_hh_l0"]),
            emb: get("emb.weight"),
            h: self.z_dim as usize,
        }
    }

    /// The GRU over the embeddings of epochs 0..=upto ([`Tape::outputs`] are z_0..z_upto),
    /// with what [`Tape::backward`] needs. Only the recurrence runs step by step (on the
    /// host); autograd over ~90 steps of a dozen tiny ops each was most of an agent
    /// update (docs/BENCHMARKS.md).
    fn z_all(&self, upto: i64) -> (Tape, GruParams) {
        let upto = upto.clamp(0, self.max_epochs - 1) as usize;
        let p = self.gru_params();
        (Tape::forward(&p, upto + 1), p)
    }

    /// Row of z_all for epoch `e` (epochs past the embedding table use its last row).
    fn row(&self, e: usize) -> i64 {
        (e as i64).min(self.max_epochs - 1)
    }

    /// z for each epoch index, recomputed with the current GRU ([B, z_dim], no gradients).
    pub fn z_for(&self, epochs: &[usize]) -> Tensor {
        let n = epochs.len() as i64;
        if !self.enabled || n == 0 {
            return Tensor::zeros([n, self.z_dim], (Kind::Float, Device::Cpu));
        }
        let max = *epochs.iter().max().expect("non-empty") as i64;
        let (tape, _) = self.z_all(max);
        let (z, h) = (tape.outputs(), self.z_dim as usize);
        let rows: Vec<f32> = epochs
            .iter()
            .flat_map(|&e| z[self.row(e) as usize * h..][..h].iter().copied())
            .collect();
        Tensor::from_slice(&rows).view([n, self.z_dim])
    }

    /// z of one epoch, detached, shape [1, z_dim].
    pub fn z(&self, epoch: usize) -> Tensor {
        self.z_for(&[epoch])
    }

    /// Eq. 3 on a batch: the loss, with every parameter's gradient set (decoder by
    /// autograd; GRU and embeddings by [`Tape::backward`] from dL/dz).
    fn loss_and_grads(&mut self, s: &Tensor, a: &Tensor, r: &Tensor, epochs: &[usize]) -> f64 {
        let max = *epochs.iter().max().expect("non-empty batch") as i64;
        let (tape, p) = self.z_all(max);
        let leaf = Tensor::from_slice(tape.outputs())
            .view([tape.steps as i64, self.z_dim])
            .set_requires_grad(true);
        let idx: Vec<i64> = epochs.iter().map(|&e| self.row(e)).collect();
        let zb = leaf.index_select(0, &Tensor::from_slice(&idx));
        let pred = self.dec.forward(&Tensor::cat(&[s, a, &zb], 1));
        let loss = pred.mse_loss(r, tch::Reduction::Mean);
        self.opt.zero_grad();
        loss.backward();
        let dz = Vec::<f32>::try_from(leaf.grad().flatten(0, -1)).expect("dL/dz");
        let g = tape.backward(&p, &dz);
        // d/dp of sum(p * G) is G: hands the host gradients to the optimiser.
        let vars = self.vs.variables();
        let mut sur = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for (name, grad) in [
            ("gru.weight_ih_l0", g.w_ih),
            ("gru.weight_hh_l0", g.w_hh),
            ("gru.bias_ih_l0", g.b_ih),
            ("gru.bias_hh_l0", g.b_hh),
            ("emb.weight", g.emb),
        ] {
            let v = &vars[name];
            sur += (v * grad).sum(Kind::Float);
        }
        sur.backward();
        loss.double_value(&[])
    }

    /// One step of Eq. 3 on a batch; returns the loss. No-op (0) when disabled.
    pub fn train_step(&mut self, s: &Tensor, a: &Tensor, r: &Tensor, epochs: &[usize]) -> f64 {
        if !self.enabled || epochs.is_empty() {
            return 0.0;
        }
        let l = self.loss_and_grads(s, a, r, epochs);
        self.opt.step();
        l
    }

    /// ψ_t := ψ_{t-1} (epochs past the table share its last row: nothing to do).
    pub fn inherit_embedding(&mut self, t: usize) {
        let row = t as i64;
        if !self.enabled || row <= 0 || row >= self.max_epochs {
            return;
        }
        let vars = self.vs.variables();
        let w = &vars["emb.weight"];
        tch::no_grad(|| w.get(row).copy_(&w.get(row - 1)));
    }

    /// Predicted reward (for diagnostics).
    pub fn predict(&self, s: &Tensor, a: &Tensor, epochs: &[usize]) -> Tensor {
        tch::no_grad(|| self.dec.forward(&Tensor::cat(&[s, a, &self.z_for(epochs)], 1)))
    }
}

/// The GRU (gates r, z, n as in PyTorch) and the epoch embeddings, detached; the
/// recurrent weights also as host vectors for the sequential part.
struct GruParams {
    w_ih: Tensor,
    b_ih: Tensor,
    w_hh: Vec<f32>,
    b_hh: Vec<f32>,
    emb: Tensor,
    h: usize,
}

/// Gradients of the GRU and embedding variables, shaped like them.
struct GruGrads {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    emb: Tensor,
}

/// A GRU forward over embedding rows 0..steps with what its backward needs. The
/// input projections of all steps (and, backwards, the weight and input
/// gradients) are single matrix products; only the recurrence (H x 3H per step)
/// runs step by step, on the host.
struct Tape {
    steps: usize,
    h: usize,
    /// Embedding rows 0..steps, [steps, I].
    x: Tensor,
    /// h_0 = 0, h_1, ..., h_steps ([steps + 1, H]).
    hs: Vec<f32>,
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    /// W_hn h + b_hn per step.
    ghn: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Dot product with 8 partial sums (so that it vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len() / 8 * 8;
    for (ca, cb) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += ca[j] * cb[j];
        }
    }
    acc.iter().sum::<f32>() + a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum::<f32>()
}

fn host(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().flatten(0, -1)).expect("f32 tensor")
}

impl Tape {
    fn forward(p: &GruParams, steps: usize) -> Tape {
        let h = p.h;
        let x = tch::no_grad(|| p.emb.narrow(0, 0, steps as i64).copy());
        // Input projections of every step at once: [steps, 3H].
        let gi = host(&tch::no_grad(|| x.matmul(&p.w_ih.tr()) + &p.b_ih));
        let mut t = Tape {
            steps,
            h,
            x,
            hs: vec![0.0; (steps + 1) * h],
            r: vec![0.0; steps * h],
            z: vec![0.0; steps * h],
            n: vec![0.0; steps * h],
            ghn: vec![0.0; steps * h],
        };
        let mut gh = vec![0.0f32; 3 * h];
        for s in 0..steps {
            let prev = &t.hs[s * h..(s + 1) * h];
            for (o, g) in gh.iter_mut().enumerate() {
                *g = p.b_hh[o] + dot(&p.w_hh[o * h..(o + 1) * h], prev);
            }
            let gi = &gi[s * 3 * h..(s + 1) * 3 * h];
            for k in 0..h {
                let r = sigmoid(gi[k] + gh[k]);
                let z = sigmoid(gi[h + k] + gh[h + k]);
                let n = (gi[2 * h + k] + r * gh[2 * h + k]).tanh();
                let prev = t.hs[s * h + k];
                t.hs[(s + 1) * h + k] = (1.0 - z) * n + z * prev;
                t.r[s * h + k] = r;
                t.z[s * h + k] = z;
                t.n[s * h + k] = n;
                t.ghn[s * h + k] = gh[2 * h + k];
            }
        }
        t
    }

    /// GRU outputs h_1..h_steps ([steps, H]): z_0..z_{steps-1}.
    fn outputs(&self) -> &[f32] {
        &self.hs[self.h..]
    }

    /// Backpropagation through time from dL/d(outputs) ([steps, H]).
    fn backward(&self, p: &GruParams, dout: &[f32]) -> GruGrads {
        let (h, steps) = (self.h, self.steps);
        let mut dgi = vec![0.0f32; steps * 3 * h];
        let mut dgh = vec![0.0f32; steps * 3 * h];
        let mut dh = vec![0.0f32; h];
        let mut dprev = vec![0.0f32; h];
        for s in (0..steps).rev() {
            let prev = &self.hs[s * h..(s + 1) * h];
            let (gi, gh) =
                (&mut dgi[s * 3 * h..(s + 1) * 3 * h], &mut dgh[s * 3 * h..(s + 1) * 3 * h]);
            for k in 0..h {
                let d = dh[k] + dout[s * h + k];
                let (r, z, n, ghn) =
                    (self.r[s * h + k], self.z[s * h + k], self.n[s * h + k], self.ghn[s * h + k]);
                let dn = d * (1.0 - z);
                let dz = d * (prev[k] - n);
                dprev[k] = d * z;
                let dan = dn * (1.0 - n * n);
                let dar = dan * ghn * r * (1.0 - r);
                let daz = dz * z * (1.0 - z);
                gi[k] = dar;
                gi[h + k] = daz;
                gi[2 * h + k] = dan;
                gh[k] = dar;
                gh[h + k] = daz;
                gh[2 * h + k] = dan * r;
            }
            // dh_prev += W_hh^T dgh
            for (o, &g) in gh.iter().enumerate() {
                if g != 0.0 {
                    for (d, w) in dprev.iter_mut().zip(&p.w_hh[o * h..(o + 1) * h]) {
                        *d += w * g;
                    }
                }
            }
            std::mem::swap(&mut dh, &mut dprev);
        }
        tch::no_grad(|| {
            let (t, g3) = (steps as i64, 3 * h as i64);
            let dgi = Tensor::from_slice(&dgi).view([t, g3]);
            let dgh = Tensor::from_slice(&dgh).view([t, g3]);
            let hprev = Tensor::from_slice(&self.hs[..steps * h]).view([t, h as i64]);
            let emb = p.emb.zeros_like();
            emb.narrow(0, 0, t).copy_(&dgi.matmul(&p.w_ih));
            GruGrads {
                w_ih: dgi.tr().matmul(&self.x),
                w_hh: dgh.tr().matmul(&hprev),
                b_ih: dgi.sum_dim_intlist(0, false, Kind::Float),
                b_hh: dgh.sum_dim_intlist(0, false, Kind::Float),
                emb,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host GRU computes libtorch's z and, through the surrogate, the gradients
    /// libtorch's autograd gives every parameter.
    #[test]
    fn host_gru_matches_libtorch_autograd() {
        let mut env = EnvModel::new(5, 16, 40, 1e-3, true, 3);
        // Move the biases off their initial values so every term is exercised.
        tch::manual_seed(9);
        for (_, mut t) in env.vs.variables() {
            tch::no_grad(|| t.copy_(&(&t + Tensor::randn_like(&t) * 0.1)));
        }
        let (tape, _) = env.z_all(30);
        let zr = env.z_all_autograd(30);
        let d =
            (Tensor::from_slice(tape.outputs()).view_as(&zr) - &zr).abs().max().double_value(&[]);
        assert!(d < 1e-5, "z differs by {d}");
        let epochs: Vec<usize> = (0..12).map(|k| (k * 7) % 31).collect();
        let s = Tensor::randn([12, 5], (Kind::Float, Device::Cpu));
        let a = Tensor::rand([12, 1], (Kind::Float, Device::Cpu));
        let r = Tensor::rand([12, 1], (Kind::Float, Device::Cpu));
        let l = env.loss_and_grads(&s, &a, &r, &epochs);
        let ours: Vec<(String, Tensor)> =
            env.vs.variables().into_iter().map(|(n, t)| (n, t.grad().copy())).collect();
        // Reference: the same loss through libtorch's GRU and autograd.
        env.opt.zero_grad();
        let idx: Vec<i64> = epochs.iter().map(|&e| e as i64).collect();
        let zb = env.z_all_autograd(30).index_select(0, &Tensor::from_slice(&idx));
        let loss =
            env.dec.forward(&Tensor::cat(&[&s, &a, &zb], 1)).mse_loss(&r, tch::Reduction::Mean);
        loss.backward();
        assert!(
            (loss.double_value(&[]) - l).abs() < 1e-6 * l.abs().max(1.0),
            "loss {l} vs {}",
            loss.double_value(&[])
        );
        let vars = env.vs.variables();
        assert_eq!(ours.len(), 11);
        for (n, g) in ours {
            let want = vars[&n].grad();
            let scale = want.abs().max().double_value(&[]).max(1e-6);
            let d = (&g - &want).abs().max().double_value(&[]);
            assert!(d <= 1e-4 * scale, "{n}: gradient differs by {d} (scale {scale})");
        }
    }
}
