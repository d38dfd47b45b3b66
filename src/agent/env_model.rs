//! The environment model (paper §3.2.1): a learnable embedding per weight-
//! training epoch, a GRU over the embeddings of epochs 1..k giving z_k, and a
//! decoder MLP predicting the reward from (s, a, z), trained with the
//! reconstruction loss of Eq. 3. With `enabled = false` ("w/o EE") z is zero.
use super::nets::{mlp, Adam};
use tch::{nn, nn::Module, nn::RNN, Device, Kind, Tensor};

pub const EMBED_DIM: i64 = 128;

pub struct EnvModel {
    pub enabled: bool,
    pub z_dim: i64,
    pub max_epochs: i64,
    pub vs: nn::VarStore,
    emb: nn::Embedding,
    gru: nn::GRU,
    dec: nn::Sequential,
    pub opt: Adam,
}

impl EnvModel {
    pub fn new(state_dim: i64, z_dim: i64, max_epochs: usize, lr: f64, enabled: bool, seed: i64) -> EnvModel {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let max_epochs = max_epochs.max(1) as i64;
        let emb = nn::embedding(&root / "emb", max_epochs, EMBED_DIM, Default::default());
        let gru = nn::gru(&root / "gru", EMBED_DIM, z_dim, Default::default());
        let dec = mlp(&root / "dec", state_dim + 1 + z_dim, 1);
        let opt = Adam::new(&vs, lr, (0.9, 0.999));
        EnvModel { enabled, z_dim, max_epochs, vs, emb, gru, dec, opt }
    }

    /// z_0..z_upto as rows of a [upto+1, z_dim] tensor (with gradients).
    fn z_all(&self, upto: i64) -> Tensor {
        let upto = upto.clamp(0, self.max_epochs - 1);
        let idx = Tensor::arange(upto + 1, (Kind::Int64, Device::Cpu));
        let e = self.emb.forward(&idx).unsqueeze(0);
        let (out, _) = self.gru.seq(&e);
        out.squeeze_dim(0)
    }

    /// z for each epoch index, recomputed with the current GRU ([B, z_dim]).
    pub fn z_for(&self, epochs: &[usize]) -> Tensor {
        let n = epochs.len() as i64;
        if !self.enabled || n == 0 {
            return Tensor::zeros([n, self.z_dim], (Kind::Float, Device::Cpu));
        }
        let max = *epochs.iter().max().expect("non-empty") as i64;
        let idx: Vec<i64> = epochs.iter().map(|&e| (e as i64).min(self.max_epochs - 1)).collect();
        self.z_all(max).index_select(0, &Tensor::from_slice(&idx))
    }

    /// z of one epoch, detached, shape [1, z_dim].
    pub fn z(&self, epoch: usize) -> Tensor {
        tch::no_grad(|| self.z_for(&[epoch]))
    }

    /// One step of Eq. 3 on a batch; returns the loss. No-op (0) when disabled.
    pub fn train_step(&mut self, s: &Tensor, a: &Tensor, r: &Tensor, epochs: &[usize]) -> f64 {
        if !self.enabled {
            return 0.0;
        }
        let z = self.z_for(epochs);
        let pred = self.dec.forward(&Tensor::cat(&[s, a, &z], 1));
        let loss = pred.mse_loss(r, tch::Reduction::Mean);
        self.opt.minimize(&loss);
        loss.double_value(&[])
    }

    /// Predicted reward (for diagnostics).
    pub fn predict(&self, s: &Tensor, a: &Tensor, epochs: &[usize]) -> Tensor {
        tch::no_grad(|| self.dec.forward(&Tensor::cat(&[s, a, &self.z_for(epochs)], 1)))
    }
}
