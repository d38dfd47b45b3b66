//! Dataset format detection from the files present in a folder.

use std::path::{Path, PathBuf};

use super::{cifar, folder, idx, DataError};

/// A dataset layout understood by [`open`](super::open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// MNIST IDX files (`train-images-idx3-ubyte[.gz]`, ...), 1 channel.
    Idx,
    /// CIFAR-10 binary batches (`data_batch_1..5.bin`, `test_batch.bin`).
    Cifar10,
    /// CIFAR-100 binary files (`train.bin`, `test.bin`), fine labels.
    Cifar100,
    /// `train/<class>/*.png|jpg` and `val/` or `test/` class folders.
    #[serde(rename = "folder")]
    ImageFolder,
}

impl Format {
    /// Short name: `idx`, `cifar10`, `cifar100`, `folder`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "idx",
            Format::Cifar10 => "cifar10",
            Format::Cifar100 => "cifar100",
            Format::ImageFolder => "folder",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    /// Accepts `idx`/`mnist`, `cifar10`/`cifar-10`, `cifar100`/`cifar-100`,
    /// `folder`/`imagefolder` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "idx" | "mnist" => Ok(Format::Idx),
            "cifar10" | "cifar-10" => Ok(Format::Cifar10),
            "cifar100" | "cifar-100" => Ok(Format::Cifar100),
            "folder" | "imagefolder" | "image-folder" => Ok(Format::ImageFolder),
            _ => Err(format!(
                "unknown dataset format '{s}' (expected idx, cifar10, cifar100 or folder)"
            )),
        }
    }
}

/// Detects the dataset format of `dir`.
///
/// Checked in this order, the first match wins:
/// 1. IDX: `train-images-idx3-ubyte` or `t10k-images-idx3-ubyte` (optionally `.gz`);
/// 2. CIFAR-10: `data_batch_1.bin` or `test_batch.bin` in `dir` or `dir/cifar-10-batches-bin/`;
/// 3. CIFAR-100: `train.bin` or `test.bin` in `dir` or `dir/cifar-100-binary/`;
/// 4. ImageFolder: `dir/train/`, `dir/val/` or `dir/test/` containing a subfolder.
///
/// Errors ([`DataError::UnknownFormat`]) list every layout tried, or
/// [`DataError::Io`] when `dir` is not a readable folder.
pub fn detect(dir: &Path) -> Result<Format, DataError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(DataError::Malformed {
                path: dir.to_path_buf(),
                reason: "is not a folder (give the folder holding the dataset files)".into(),
            })
        }
        Err(e) => return Err(DataError::io(dir, e)),
    }
    let idx_names: Vec<String> = [idx::TRAIN_IMAGES, idx::TEST_IMAGES]
        .iter()
        .flat_map(|n| [n.to_string(), format!("{n}.gz")])
        .collect();
    if idx_names.iter().any(|n| dir.join(n).is_file()) {
        return Ok(Format::Idx);
    }
    let c10 = ["data_batch_1.bin", "test_batch.bin"];
    if cifar::find_dir(dir, cifar::CIFAR10_SUBDIR, &c10).is_some() {
        return Ok(Format::Cifar10);
    }
    let c100 = ["train.bin", "test.bin"];
    if cifar::find_dir(dir, cifar::CIFAR100_SUBDIR, &c100).is_some() {
        return Ok(Format::Cifar100);
    }
    if folder::SPLIT_DIRS.iter().any(|s| has_subdir(&dir.join(s))) {
        return Ok(Format::ImageFolder);
    }
    Err(DataError::UnknownFormat {
        path: dir.to_path_buf(),
        looked_for: vec![
            format!("MNIST IDX files ({})", idx_names.join(", ")),
            format!(
                "CIFAR-10 batches ({}, in the folder or in {}/)",
                c10.join(", "),
                cifar::CIFAR10_SUBDIR
            ),
            format!(
                "CIFAR-100 files ({}, in the folder or in {}/)",
                c100.join(", "),
                cifar::CIFAR100_SUBDIR
            ),
            "image folders (train/<class>/*.png|jpg, val/<class>/... or test/<class>/...)"
                .to_string(),
        ],
    })
}

fn has_subdir(p: &Path) -> bool {
    std::fs::read_dir(p).map(|rd| rd.flatten().any(|e| e.path().is_dir())).unwrap_or(false)
}

/// `dir/name` if it is a file, else `dir/name.gz` if that is, else `None`.
pub(crate) fn plain_or_gz(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        return Some(p);
    }
    let g = dir.join(format!("{name}.gz"));
    g.is_file().then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil;

    #[test]
    fn detects_each_format() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let idx = d.join("idx");
        testutil::write_idx_pair(
            &idx,
            "train",
            4,
            3,
            &testutil::small_images(5, 4, 3),
            &[0, 1, 2, 0, 1],
            true,
        );
        assert_eq!(detect(&idx).unwrap(), Format::Idx);

        let c10 = d.join("c10");
        std::fs::create_dir_all(c10.join("cifar-10-batches-bin")).unwrap();
        std::fs::write(c10.join("cifar-10-batches-bin/test_batch.bin"), vec![0u8; 3073]).unwrap();
        assert_eq!(detect(&c10).unwrap(), Format::Cifar10);

        let c100 = d.join("c100");
        std::fs::create_dir_all(&c100).unwrap();
        std::fs::write(c100.join("train.bin"), vec![0u8; 3074]).unwrap();
        assert_eq!(detect(&c100).unwrap(), Format::Cifar100);

        let f = d.join("folder");
        std::fs::create_dir_all(f.join("val/cat")).unwrap();
        assert_eq!(detect(&f).unwrap(), Format::ImageFolder);
    }

    #[test]
    fn unknown_lists_what_it_looked_for() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("readme.txt"), "x").unwrap();
        let e = detect(t.path()).unwrap_err().to_string();
        for want in ["train-images-idx3-ubyte", "data_batch_1.bin", "train.bin", "train/<class>"] {
            assert!(e.contains(want), "{e}");
        }
        assert!(e.contains(&t.path().display().to_string()), "{e}");
        let missing = t.path().join("nope");
        let e = detect(&missing).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
        let e = detect(&t.path().join("readme.txt")).unwrap_err().to_string();
        assert!(e.contains("readme.txt") && e.contains("not a folder"), "{e}");
    }

    #[test]
    fn format_parse_and_display() {
        for f in [Format::Idx, Format::Cifar10, Format::Cifar100, Format::ImageFolder] {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
            let j = serde_json::to_string(&f).unwrap();
            assert_eq!(j, format!("\"{f}\""));
        }
        assert_eq!("MNIST".parse::<Format>().unwrap(), Format::Idx);
        assert!("jpeg".parse::<Format>().is_err());
    }
}
