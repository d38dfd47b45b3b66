//! The one error type of the dataset module.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking or iterating a dataset.
///
/// Every variant names the file or folder involved (the first thing in its message),
/// so a user can tell which of several inputs is at fault. Nothing in `data`
/// panics on bad input; it returns one of these instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An I/O error (open, read, list a folder, decompress).
    #[error("{}: {error}{}", .path.display(), crate::util::relative_hint(.path, .error))]
    Io {
        /// File or folder being accessed.
        path: PathBuf,
        /// Underlying error (in the message, not a `source()`: see the crate documentation).
        error: std::io::Error,
    },

    /// A file does not start with the magic number of its format.
    #[error("{}: wrong magic number 0x{found:08x} (expected 0x{expected:08x}: {what})", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Magic number the format requires.
        expected: u32,
        /// Magic number found.
        found: u32,
        /// What the expected magic means (e.g. "IDX unsigned-byte 3-d images").
        what: &'static str,
    },

    /// A file is shorter than its header (or record size) requires.
    #[error("{}: truncated file: expected {expected} bytes, found {actual}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header or record layout requires.
        expected: u64,
        /// Bytes present (after decompression for `.gz`).
        actual: u64,
    },

    /// A file or folder is structurally wrong in a way not covered by other variants
    /// (trailing bytes, zero dimensions, a class folder absent from `train/`, ...).
    #[error("{}: {reason}", .path.display())]
    Malformed {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An IDX image file and its label file disagree on the sample count.
    #[error("{} holds {n_images} images but {} holds {n_labels} labels", .images.display(), .labels.display())]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// Images in `images`.
        n_images: usize,
        /// Labels in `labels`.
        n_labels: usize,
    },

    /// A label is not below the number of classes (of the dataset or of the model).
    #[error("{}: label {label} of sample {index} is out of range (must be < {num_classes} classes)", .path.display())]
    LabelOutOfRange {
        /// The label file (or image folder).
        path: PathBuf,
        /// Sample index.
        index: usize,
        /// Offending label.
        label: u32,
        /// Number of classes the label must be below.
        num_classes: usize,
    },

    /// The dataset's image shape differs from the model input.
    #[error("{}: dataset images are {}x{}x{} (CxHxW) but the model input is {}x{}x{}: {detail}",
        .path.display(), .dataset[0], .dataset[1], .dataset[2], .model[0], .model[1], .model[2])]
    ShapeMismatch {
        /// Dataset file or folder.
        path: PathBuf,
        /// Dataset sample shape `[C, H, W]`.
        dataset: [usize; 3],
        /// Model input shape `[C, H, W]`.
        model: [usize; 3],
        /// Which part differs (channel count, size, or both).
        detail: String,
    },

    /// Files or folders required by the format are not there.
    #[error("{}: missing {what}; looked for: {}", .path.display(), .looked_for.join(", "))]
    Missing {
        /// Folder that was searched.
        path: PathBuf,
        /// What was being looked for (e.g. "MNIST IDX test files").
        what: String,
        /// Names tried.
        looked_for: Vec<String>,
    },

    /// [`detect`](fn@crate::data::detect) found no known dataset layout.
    #[error("{}: no dataset found; looked for: {}", .path.display(), .looked_for.join("; "))]
    UnknownFormat {
        /// Folder that was searched.
        path: PathBuf,
        /// Layouts tried, each with the file names it needs.
        looked_for: Vec<String>,
    },

    /// An image file could not be decoded.
    #[error("{}: cannot decode image: {error}", .path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// Decoder error (in the message, not a `source()`).
        error: image::ImageError,
    },

    /// The dataset (or a class folder, or a split) has no samples.
    #[error("{}: {what} is empty", .path.display())]
    Empty {
        /// File or folder.
        path: PathBuf,
        /// What is empty ("dataset", "class folder", ...).
        what: String,
    },

    /// A sample index is outside `0..len`.
    #[error("{}: sample index {index} out of range (dataset has {len} samples)", .path.display())]
    IndexOutOfRange {
        /// Dataset file or folder.
        path: PathBuf,
        /// Requested index.
        index: usize,
        /// Dataset length.
        len: usize,
    },

    /// A class has too few images for the requested holdout split.
    #[error("{}: class {class} has {have} images but the holdout split needs {need} of them plus at least 1 left for training", .path.display())]
    TooFewImages {
        /// Dataset file or folder.
        path: PathBuf,
        /// Class id.
        class: u32,
        /// Images of that class available.
        have: usize,
        /// Images of that class the holdout takes.
        need: usize,
    },

    /// An invalid option for the dataset (batch size 0, wrong normalisation length, ...).
    #[error("{}: invalid configuration: {reason}", .path.display())]
    Config {
        /// Dataset file or folder the configuration applies to.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A loader worker thread stopped without reporting an error (it panicked).
    #[error("{}: data loader worker thread stopped unexpectedly", .path.display())]
    Worker {
        /// Dataset file or folder.
        path: PathBuf,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        DataError::Io { path: path.into(), error }
    }

    /// The file or folder the error is about (for `CountMismatch`, the image file).
    pub fn path(&self) -> &std::path::Path {
        match self {
            DataError::Io { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::Malformed { path, .. }
            | DataError::LabelOutOfRange { path, .. }
            | DataError::ShapeMismatch { path, .. }
            | DataError::Missing { path, .. }
            | DataError::UnknownFormat { path, .. }
            | DataError::Decode { path, .. }
            | DataError::Empty { path, .. }
            | DataError::IndexOutOfRange { path, .. }
            | DataError::TooFewImages { path, .. }
            | DataError::Config { path, .. }
            | DataError::Worker { path } => path,
            DataError::CountMismatch { images, .. } => images,
        }
    }
}
