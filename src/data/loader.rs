//! Deterministic batching with optional background prefetch.
//!
//! Everything random is a pure function of `(seed, epoch, position)`:
//! * the epoch order is `indices` shuffled by `Rng::stream(seed, Stream::Order).fork(epoch)`;
//! * the sample at position `k` of the epoch is augmented with
//!   `Rng::stream(seed, Stream::Augment).fork(epoch).fork(k)`.
//!
//! So batches are identical with or without worker threads, with any number of
//! workers, and when an epoch is resumed mid-way ([`Loader::epoch_from`]).
//! With `workers = W > 0`, worker `j` builds batches `j, j+W, j+2W, …` into its own
//! bounded channel and the iterator takes them round-robin, so order is preserved.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{DataError, Dataset, Transform};
use crate::rng::{Rng, Stream};

/// A collated batch: `data` is NCHW `f32` (NHWC for a channels-last transform,
/// [`Transform::layout`]), `labels` one `i64` per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `N*C*H*W` values, sample after sample.
    pub data: Vec<f32>,
    /// `[N, C, H, W]`, or `[N, H, W, C]` for a channels-last transform.
    pub shape: [usize; 4],
    /// Labels, `N` values.
    pub labels: Vec<i64>,
    /// Dataset indices of the samples, `N` values.
    pub indices: Vec<usize>,
    /// Samples of the whole (global) batch this one is a shard of; `N` unsharded.
    pub global: usize,
}

/// Loader worker threads as a recipe gives them: `auto` or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// The cores left to this process after its training threads (at least 1).
    #[default]
    Auto,
    Count(usize),
}

impl Workers {
    /// The thread count on a process with `cores` cores (its share of the node) that
    /// trains with `threads` libtorch threads (0: libtorch's default, all cores).
    pub fn resolve(self, cores: usize, threads: usize) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto if threads == 0 => 1,
            Workers::Auto => cores.saturating_sub(threads).max(1),
        }
    }
}

impl serde::Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`auto` or a number of threads")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Workers, E> {
                Ok(Workers::Count(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Workers, E> {
                usize::try_from(v)
                    .map(Workers::Count)
                    .map_err(|_| E::custom(format!("{v} workers: expected `auto` or a count >= 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                match v {
                    "auto" => Ok(Workers::Auto),
                    _ => Err(E::custom(format!("'{v}': expected `auto` or a number of threads"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Samples per batch (> 0).
    pub batch_size: usize,
    /// Shuffle the index list every epoch (seeded by `seed` and the epoch number).
    pub shuffle: bool,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of both the order and the augmentation streams.
    pub seed: u64,
    /// Background threads building batches; 0 builds them on the calling thread.
    pub workers: usize,
    /// Batches buffered ahead in total when `workers > 0` (at least 1 per worker).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// Batch 64, shuffled, keep the last batch, seed 0, one worker, 3 batches ahead.
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            shuffle: true,
            drop_last: false,
            seed: 0,
            workers: 1,
            prefetch: 3,
        }
    }
}

/// Iterates a subset of a dataset in batches. Cheap to clone (shares the dataset).
#[derive(Debug, Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ds: Arc<dyn Dataset>,
    indices: Vec<usize>,
    tf: Transform,
    cfg: LoaderConfig,
    /// (rank, world): this loader yields rank's contiguous share of every global batch.
    shard: (usize, usize),
}

impl Loader {
    /// A loader over `indices` of `ds` (e.g. `train_idx` from the holdout split, or
    /// `(0..ds.len()).collect()`). Checks the indices, batch size and normalisation.
    pub fn new(
        ds: Arc<dyn Dataset>,
        indices: Vec<usize>,
        tf: Transform,
        cfg: LoaderConfig,
    ) -> Result<Self, DataError> {
        let cerr = |reason: String| DataError::Config { path: ds.source().into(), reason };
        if cfg.batch_size == 0 {
            return Err(cerr("batch size must be > 0".into()));
        }
        tf.normalize.validate(ds.shape()[0]).map_err(cerr)?;
        if let Some(&i) = indices.iter().find(|&&i| i >= ds.len()) {
            return Err(DataError::IndexOutOfRange {
                path: ds.source().into(),
                index: i,
                len: ds.len(),
            });
        }
        if indices.is_empty() {
            return Err(DataError::Empty {
                path: ds.source().into(),
                what: "loader index list".into(),
            });
        }
        Ok(Loader { inner: Arc::new(Inner { ds, indices, tf, cfg, shard: (0, 1) }) })
    }

    /// The same epochs split for data-parallel training: batch `b` holds rank `rank`'s
    /// contiguous share (of `world`) of global batch `b`, the global batch as one
    /// process builds it with the same seed (same order, same augmentation of each
    /// sample), so the shards of all ranks make up exactly one process's batch. A
    /// final global batch with fewer samples than ranks is dropped.
    pub fn sharded(&self, rank: usize, world: usize) -> Loader {
        let i = &self.inner;
        let shard = (rank.min(world.max(1) - 1), world.max(1));
        let inner = Inner {
            ds: i.ds.clone(),
            indices: i.indices.clone(),
            tf: i.tf.clone(),
            cfg: i.cfg.clone(),
            shard,
        };
        Loader { inner: Arc::new(inner) }
    }

    /// (rank, world) of a [`Loader::sharded`] loader; (0, 1) otherwise.
    pub fn shard(&self) -> (usize, usize) {
        self.inner.shard
    }

    /// A loader over every sample of `ds`.
    pub fn all(ds: Arc<dyn Dataset>, tf: Transform, cfg: LoaderConfig) -> Result<Self, DataError> {
        let n = ds.len();
        Self::new(ds, (0..n).collect(), tf, cfg)
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.inner.ds
    }
    /// The per-sample transform (normalisation, augmentation, layout).
    pub fn transform(&self) -> &Transform {
        &self.inner.tf
    }
    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.cfg
    }
    /// Number of samples per epoch (before `drop_last`).
    pub fn num_samples(&self) -> usize {
        self.inner.indices.len()
    }
    /// Number of batches per epoch (after `drop_last`).
    pub fn num_batches(&self) -> usize {
        self.inner.num_batches()
    }

    /// Dataset indices in the order epoch `epoch` visits them.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        self.inner.order(epoch)
    }

    /// Builds batch `b` of epoch `epoch` on the calling thread (random access).
    pub fn batch(&self, epoch: u64, b: usize) -> Result<Batch, DataError> {
        let order = self.inner.order(epoch);
        self.inner.build(&order, epoch, b)
    }

    /// Iterates epoch `epoch` from its first batch.
    pub fn epoch(&self, epoch: u64) -> Batches {
        self.epoch_from(epoch, 0)
    }

    /// Iterates epoch `epoch` starting at batch `first` (to resume from a checkpoint).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Batches {
        let inner = Arc::clone(&self.inner);
        let order = Arc::new(inner.order(epoch));
        let total = inner.num_batches();
        let first = first.min(total);
        let workers = inner.cfg.workers.min(total - first);
        let mut chans = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let cap = inner.cfg.prefetch.div_ceil(workers.max(1)).max(1);
        for j in 0..workers {
            let (tx, rx) = sync_channel::<Result<Batch, DataError>>(cap);
            let (inner, order) = (Arc::clone(&inner), Arc::clone(&order));
            let h = std::thread::Builder::new().name(format!("rlal-data-{j}")).spawn(move || {
                for b in (first + j..total).step_by(workers) {
                    let r = inner.build(&order, epoch, b);
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            });
            match h {
                Ok(h) => {
                    chans.push(rx);
                    handles.push(h);
                }
                Err(_) => break,
            }
        }
        if chans.len() != workers {
            // A thread could not be spawned: batches are assigned by worker count, so
            // stop the ones started and build on the calling thread instead.
            chans.clear();
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
        Batches {
            inner,
            order,
            epoch,
            start: first,
            next: first,
            total,
            chans,
            handles,
            done: false,
        }
    }
}

impl Inner {
    fn num_batches(&self) -> usize {
        let (n, b) = (self.indices.len(), self.cfg.batch_size);
        if self.cfg.drop_last || (n % b > 0 && n % b < self.shard.1) {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.indices.clone();
        if self.cfg.shuffle {
            Rng::stream(self.cfg.seed, Stream::Order).fork(epoch).shuffle(&mut order);
        }
        order
    }

    fn build(&self, order: &[usize], epoch: u64, b: usize) -> Result<Batch, DataError> {
        let bs = self.cfg.batch_size;
        let (gstart, gend) = (b * bs, ((b + 1) * bs).min(order.len()));
        let global = gend.saturating_sub(gstart);
        let (rank, world) = self.shard;
        let (start, end) = (gstart + global * rank / world, gstart + global * (rank + 1) / world);
        if start >= end || b >= self.num_batches() {
            return Err(DataError::Config {
                path: self.ds.source().into(),
                reason: format!(
                    "batch {b} is past the end of the epoch ({} batches)",
                    self.num_batches()
                ),
            });
        }
        let shape = self.ds.shape();
        let per = shape.iter().product::<usize>();
        let n = end - start;
        let mut data = vec![0f32; n * per];
        let mut labels = Vec::with_capacity(n);
        let mut buf = Vec::with_capacity(per);
        let aug = Rng::stream(self.cfg.seed, Stream::Augment).fork(epoch);
        for (k, (&i, out)) in order[start..end].iter().zip(data.chunks_exact_mut(per)).enumerate() {
            let mut rng =
                if self.tf.is_random() { aug.fork((start + k) as u64) } else { aug.clone() };
            let label = match self.tf.random_resized_crop {
                Some(scale) => match self.ds.read_random_crop(i, scale, &mut rng, &mut buf)? {
                    Some(l) => l,
                    None => self.ds.read_into(i, &mut buf)?,
                },
                None => self.ds.read_into(i, &mut buf)?,
            };
            if buf.len() != per {
                return Err(DataError::Malformed {
                    path: self.ds.source().into(),
                    reason: format!(
                        "sample {i} has {} bytes, expected {per} for shape {shape:?}",
                        buf.len()
                    ),
                });
            }
            self.tf.apply(&buf, shape, &mut rng, out);
            labels.push(label as i64);
        }
        let [d0, d1, d2] = self.tf.out_dims(shape);
        Ok(Batch {
            data,
            shape: [n, d0, d1, d2],
            labels,
            indices: order[start..end].to_vec(),
            global,
        })
    }
}

/// Iterator over the batches of one epoch; yields `Err` once and stops on a data
/// error. Dropping it stops and joins the worker threads.
#[derive(Debug)]
pub struct Batches {
    inner: Arc<Inner>,
    order: Arc<Vec<usize>>,
    epoch: u64,
    start: usize,
    next: usize,
    total: usize,
    chans: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    done: bool,
}

impl Batches {
    /// Index (within the epoch) of the batch the next call to `next` returns.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.total {
            return None;
        }
        let b = self.next;
        let r = if self.chans.is_empty() {
            self.inner.build(&self.order, self.epoch, b)
        } else {
            let j = (b - self.start) % self.chans.len();
            self.chans[j]
                .recv()
                .unwrap_or_else(|_| Err(DataError::Worker { path: self.inner.ds.source().into() }))
        };
        self.next += 1;
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.done { 0 } else { self.total - self.next };
        (n, Some(n))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.chans.clear(); // unblocks workers waiting to send
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
