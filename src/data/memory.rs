//! In-memory datasets (IDX and CIFAR): all pixels in one contiguous `Vec<u8>`.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Format};

/// A dataset held fully in memory: `len` images of shape `[C, H, W]` stored
/// back to back in CHW order, plus one label per image.
#[derive(Debug, Clone)]
pub struct InMemoryDataset {
    format: Format,
    source: PathBuf,
    label_source: PathBuf,
    shape: [usize; 3],
    pixels: Vec<u8>,
    labels: Vec<u32>,
    num_classes: usize,
    class_names: Option<Vec<String>>,
}

impl InMemoryDataset {
    /// Builds a dataset from raw parts, checking sizes and labels.
    ///
    /// `source` names the image file/folder in errors; `label_source` the file the
    /// labels came from (the same for CIFAR). `pixels.len()` must equal
    /// `labels.len() * C*H*W`, every label must be `< num_classes`, and the dataset
    /// must not be empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        format: Format,
        source: PathBuf,
        label_source: PathBuf,
        shape: [usize; 3],
        pixels: Vec<u8>,
        labels: Vec<u32>,
        num_classes: usize,
        class_names: Option<Vec<String>>,
    ) -> Result<Self, DataError> {
        let per = shape.iter().product::<usize>();
        if per == 0 {
            return Err(DataError::Malformed {
                path: source,
                reason: format!("image shape {shape:?} has a zero dimension"),
            });
        }
        if labels.is_empty() {
            return Err(DataError::Empty { path: source, what: "dataset".into() });
        }
        if pixels.len() != labels.len() * per {
            return Err(DataError::Malformed {
                path: source,
                reason: format!(
                    "{} pixel bytes for {} images of {per} bytes",
                    pixels.len(),
                    labels.len()
                ),
            });
        }
        if let Some((index, &label)) =
            labels.iter().enumerate().find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: label_source,
                index,
                label,
                num_classes,
            });
        }
        let class_names = class_names.filter(|n| n.len() == num_classes);
        Ok(InMemoryDataset {
            format,
            source,
            label_source,
            shape,
            pixels,
            labels,
            num_classes,
            class_names,
        })
    }

    /// Pixels of sample `i` (`C*H*W` bytes, CHW), or `None` when out of range.
    pub fn pixels(&self, i: usize) -> Option<&[u8]> {
        let per = self.shape.iter().product::<usize>();
        self.pixels.get(i * per..(i + 1) * per)
    }

    /// All pixels, sample after sample.
    pub fn all_pixels(&self) -> &[u8] {
        &self.pixels
    }
}

impl Dataset for InMemoryDataset {
    fn format(&self) -> Format {
        self.format
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn source(&self) -> &Path {
        &self.source
    }
    fn label_source(&self) -> &Path {
        &self.label_source
    }
    fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }
    fn read_into(&self, i: usize, out: &mut Vec<u8>) -> Result<u32, DataError> {
        let px = self.pixels(i).ok_or_else(|| DataError::IndexOutOfRange {
            path: self.source.clone(),
            index: i,
            len: self.len(),
        })?;
        out.clear();
        out.extend_from_slice(px);
        Ok(self.labels[i])
    }
}
