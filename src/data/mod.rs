//! Datasets: readers, format detection, transforms, batching and the holdout split.
//!
//! Pure Rust (no libtorch). Formats (see `docs/DATA.md`):
//! * MNIST IDX ([`idx`]): `train-images-idx3-ubyte[.gz]` etc., in memory;
//! * CIFAR-10 / CIFAR-100 binary batches ([`cifar`]), in memory;
//! * ImageFolder ([`folder`]): `DIR/train/<class>/*.png|jpg`, decoded lazily per sample.
//!
//! Typical use:
//! ```no_run
//! use std::path::Path;
//! use rlal::data::{self, OpenOptions, Split, Loader, LoaderConfig, Transform, Normalize};
//! let ds = data::open(Path::new("data/mnist5k"), Split::Train, &OpenOptions::default())?;
//! data::check_input(&*ds, [1, 28, 28])?;
//! let (train_idx, _holdout) = data::split_holdout(&*ds, 1000, 7)?;
//! let tf = Transform::eval(Normalize::mnist());
//! let loader = Loader::new(ds, train_idx, tf, LoaderConfig { batch_size: 64, ..Default::default() })?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?; // NCHW f32 + i64 labels
//! #   let _ = batch;
//! }
//! # Ok::<(), rlal::data::DataError>(())
//! ```

pub mod bench;
pub mod check;
pub mod cifar;
pub mod detect;
mod error;
pub mod folder;
pub mod idx;
pub mod loader;
mod memory;
pub mod preprocess;
pub mod split;
pub mod transform;

#[cfg(test)]
pub(crate) mod testutil;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::{check_input, check_labels, check_model};
pub use detect::{detect, Format};
pub use error::DataError;
pub use folder::ResizeMode;
pub use loader::{Batch, Batches, Loader, LoaderConfig, Workers};
pub use memory::InMemoryDataset;
pub use preprocess::Preprocess;
pub use split::{split_holdout, split_holdout_labels};
pub use transform::{Normalize, Transform};

/// One decoded sample: raw `u8` pixels in CHW order and its class label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `C*H*W` bytes, channel planes one after another.
    pub pixels: Vec<u8>,
    /// Class id, `< num_classes`.
    pub label: u32,
}

/// A labelled image dataset with a fixed sample shape.
///
/// Implementations are `Send + Sync` and are shared as `Arc<dyn Dataset>`.
/// In-memory formats copy bytes in [`read_into`](Dataset::read_into); folder
/// datasets decode and resize the image file there.
pub trait Dataset: Send + Sync + std::fmt::Debug {
    /// Format the dataset was read from.
    fn format(&self) -> Format;
    /// Number of samples.
    fn len(&self) -> usize;
    /// `true` when there are no samples (readers never return empty datasets).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample shape `[C, H, W]`.
    fn shape(&self) -> [usize; 3];
    /// Number of classes; every label is below it.
    fn num_classes(&self) -> usize;
    /// All labels, one per sample (available without decoding images).
    fn labels(&self) -> &[u32];
    /// File or folder the images come from (used in error messages).
    fn source(&self) -> &Path;
    /// File or folder the labels come from (defaults to [`source`](Dataset::source)).
    fn label_source(&self) -> &Path {
        self.source()
    }
    /// Class names when the format provides them (folder names, CIFAR meta files).
    fn class_names(&self) -> Option<&[String]> {
        None
    }
    /// Writes the pixels of sample `i` into `out` (cleared first, `C*H*W` bytes, CHW)
    /// and returns its label.
    fn read_into(&self, i: usize, out: &mut Vec<u8>) -> Result<u32, DataError>;
    /// Sample `i` from a random crop of its source image (area fraction in `scale`,
    /// torchvision's `RandomResizedCrop`), brought to the dataset's size; `None` for
    /// datasets stored at their size (IDX, CIFAR), which are read as [`Dataset::read_into`].
    fn read_random_crop(
        &self,
        _i: usize,
        _scale: [f32; 2],
        _rng: &mut crate::rng::Rng,
        _out: &mut Vec<u8>,
    ) -> Result<Option<u32>, DataError> {
        Ok(None)
    }
    /// Sample `i` as an owned [`Sample`].
    fn get(&self, i: usize) -> Result<Sample, DataError> {
        let mut pixels = Vec::new();
        let label = self.read_into(i, &mut pixels)?;
        Ok(Sample { pixels, label })
    }
    /// Bytes per sample, `C*H*W`.
    fn sample_len(&self) -> usize {
        self.shape().iter().product()
    }
}

/// Which part of a dataset to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data (`train-*`, `data_batch_*.bin`, `train.bin`, `train/`).
    Train,
    /// Test / validation data (`t10k-*`, `test_batch.bin`, `test.bin`, `val/` or `test/`).
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Options for [`open`]. The defaults suit every format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenOptions {
    /// Target `[H, W]` for ImageFolder datasets (ignored by IDX/CIFAR, whose size is
    /// fixed). `None`: the size of the first image of `train/` (or of the opened split).
    pub size: Option<[usize; 2]>,
    /// Channels for ImageFolder datasets: 3 (RGB, default) or 1 (luma). Ignored by IDX
    /// (always 1) and CIFAR (always 3).
    pub channels: Option<usize>,
    /// How ImageFolder images are brought to `size`.
    pub resize: ResizeMode,
    /// Number of classes for IDX datasets; labels must be below it. `None`: the largest
    /// label + 1 (for [`open_both`], over train and test together). Ignored elsewhere.
    pub num_classes: Option<usize>,
}

/// Detects the format of `dir` and opens one split of it.
pub fn open(dir: &Path, split: Split, opts: &OpenOptions) -> Result<Arc<dyn Dataset>, DataError> {
    let format = detect(dir)?;
    open_as(dir, format, split, opts)
}

/// Opens one split of `dir`, read as `format` (no detection).
pub fn open_as(
    dir: &Path,
    format: Format,
    split: Split,
    opts: &OpenOptions,
) -> Result<Arc<dyn Dataset>, DataError> {
    Ok(match format {
        Format::Idx => Arc::new(idx::open_idx(dir, split, opts.num_classes)?),
        Format::Cifar10 => Arc::new(cifar::open_cifar10(dir, split)?),
        Format::Cifar100 => Arc::new(cifar::open_cifar100(dir, split)?),
        Format::ImageFolder => Arc::new(folder::FolderDataset::open(dir, split, opts)?),
    })
}

/// The train and test splits of one dataset, with the same shape and class count.
#[derive(Debug, Clone)]
pub struct DatasetPair {
    /// Training split.
    pub train: Arc<dyn Dataset>,
    /// Test / validation split.
    pub test: Arc<dyn Dataset>,
}

/// Detects the format of `dir` and opens both splits.
///
/// For IDX without `opts.num_classes`, the class count is the largest label over
/// both splits + 1, so train and test agree even if a class is absent from one.
/// Errors if the two splits end up with different shapes or class counts.
pub fn open_both(dir: &Path, opts: &OpenOptions) -> Result<DatasetPair, DataError> {
    let format = detect(dir)?;
    let (train, test): (Arc<dyn Dataset>, Arc<dyn Dataset>) = match format {
        Format::Idx => {
            let (a, b) = idx::open_idx_pair(dir, opts.num_classes)?;
            (Arc::new(a), Arc::new(b))
        }
        Format::ImageFolder => {
            let train = folder::FolderDataset::open(dir, Split::Train, opts)?;
            let [_, h, w] = train.shape();
            let test_opts = OpenOptions { size: Some([h, w]), ..opts.clone() };
            let test = folder::FolderDataset::open(dir, Split::Test, &test_opts)?;
            (Arc::new(train), Arc::new(test))
        }
        _ => (open_as(dir, format, Split::Train, opts)?, open_as(dir, format, Split::Test, opts)?),
    };
    if train.shape() != test.shape() || train.num_classes() != test.num_classes() {
        return Err(DataError::Malformed {
            path: PathBuf::from(test.source()),
            reason: format!(
                "test split has shape {:?} and {} classes but train split ({}) has shape {:?} and {} classes",
                test.shape(),
                test.num_classes(),
                train.source().display(),
                train.shape(),
                train.num_classes()
            ),
        });
    }
    Ok(DatasetPair { train, test })
}
