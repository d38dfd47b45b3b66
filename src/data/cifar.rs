//! CIFAR-10 / CIFAR-100 binary-version readers.
//!
//! * CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` (train) and `test_batch.bin`
//!   (test); records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//!   each 32x32 row-major), i.e. already CHW.
//! * CIFAR-100: `train.bin` / `test.bin`; records of coarse label, fine label, then
//!   3072 pixel bytes. The **fine** label (100 classes) is used.
//!
//! The files may sit in the given folder or in the folder the official archives
//! unpack to (`cifar-10-batches-bin/`, `cifar-100-binary/`). Optional class names
//! come from `batches.meta.txt` / `fine_label_names.txt` when present.

use std::path::{Path, PathBuf};

use super::idx::read_maybe_gz;
use super::{DataError, Format, InMemoryDataset, Split};

/// Folder the CIFAR-10 binary archive unpacks to.
pub const CIFAR10_SUBDIR: &str = "cifar-10-batches-bin";
/// Folder the CIFAR-100 binary archive unpacks to.
pub const CIFAR100_SUBDIR: &str = "cifar-100-binary";
/// Bytes of pixels per CIFAR image (3x32x32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// `dir` if it holds one of `names`, else `dir/subdir` if that does, else `None`.
pub fn find_dir(dir: &Path, subdir: &str, names: &[&str]) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(subdir)]
        .into_iter()
        .find(|d| names.iter().any(|n| d.join(n).is_file()))
}

fn cifar10_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    }
}

/// Parses one CIFAR binary file with `label_bytes` leading label bytes per record
/// (the last of which is used), appending pixels and labels.
fn read_records(
    path: &Path,
    label_bytes: usize,
    num_classes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let b = read_maybe_gz(path)?;
    let rec = label_bytes + IMAGE_BYTES;
    if b.is_empty() {
        return Err(DataError::Empty { path: path.into(), what: "CIFAR batch file".into() });
    }
    if b.len() % rec != 0 {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: (b.len() / rec + 1) as u64 * rec as u64,
            actual: b.len() as u64,
        });
    }
    pixels.reserve(b.len() / rec * IMAGE_BYTES);
    for (index, r) in b.chunks_exact(rec).enumerate() {
        let label = r[label_bytes - 1] as u32;
        if label as usize >= num_classes {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                index,
                label,
                num_classes,
            });
        }
        labels.push(label);
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

fn read_names(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

fn open_cifar(dir: &Path, split: Split, format: Format) -> Result<InMemoryDataset, DataError> {
    let (subdir, names, label_bytes, k, meta, what) = match format {
        Format::Cifar10 => {
            (CIFAR10_SUBDIR, cifar10_names(split), 1, 10, "batches.meta.txt", "CIFAR-10")
        }
        _ => {
            let n = match split {
                Split::Train => "train.bin",
                Split::Test => "test.bin",
            };
            (CIFAR100_SUBDIR, vec![n.to_string()], 2, 100, "fine_label_names.txt", "CIFAR-100")
        }
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let root = find_dir(dir, subdir, &refs).ok_or_else(|| DataError::Missing {
        path: dir.into(),
        what: format!("{what} {split} files"),
        looked_for: names.iter().map(|n| format!("{n} (or {subdir}/{n})")).collect(),
    })?;
    let missing: Vec<String> = names.iter().filter(|n| !root.join(n).is_file()).cloned().collect();
    if !missing.is_empty() {
        return Err(DataError::Missing {
            path: root,
            what: format!("{what} {split} files"),
            looked_for: missing,
        });
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for n in &names {
        read_records(&root.join(n), label_bytes, k, &mut pixels, &mut labels)?;
    }
    let source = if names.len() == 1 { root.join(&names[0]) } else { root.clone() };
    let class_names = read_names(&root.join(meta));
    InMemoryDataset::new(
        format,
        source.clone(),
        source,
        [3, 32, 32],
        pixels,
        labels,
        k,
        class_names,
    )
}

/// Opens a CIFAR-10 split (all five training batches are required for `Train`).
/// The dataset's source is the batch folder (train) or `test_batch.bin` (test).
pub fn open_cifar10(dir: &Path, split: Split) -> Result<InMemoryDataset, DataError> {
    open_cifar(dir, split, Format::Cifar10)
}

/// Opens a CIFAR-100 split with fine labels (100 classes).
pub fn open_cifar100(dir: &Path, split: Split) -> Result<InMemoryDataset, DataError> {
    open_cifar(dir, split, Format::Cifar100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{open, open_both, OpenOptions};

    /// `n` records; image i has every byte = (i*11 + plane) and label(s) from `label`.
    fn records(n: usize, labels: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..n {
            b.extend_from_slice(&labels[i % labels.len()]);
            for p in 0..3 {
                b.extend(std::iter::repeat_n((i * 11 + p * 100) as u8, 1024));
            }
        }
        b
    }

    #[test]
    fn cifar10_in_subfolder() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(CIFAR10_SUBDIR);
        std::fs::create_dir_all(&d).unwrap();
        for i in 1..=5 {
            std::fs::write(
                d.join(format!("data_batch_{i}.bin")),
                records(2, &[vec![i as u8], vec![9]]),
            )
            .unwrap();
        }
        std::fs::write(d.join("test_batch.bin"), records(3, &[vec![7]])).unwrap();
        let names: String = (0..10).map(|c| format!("class{c}\n")).collect();
        std::fs::write(d.join("batches.meta.txt"), names + "\n").unwrap();
        let p = open_both(t.path(), &OpenOptions::default()).unwrap();
        assert_eq!(p.train.format(), Format::Cifar10);
        assert_eq!((p.train.len(), p.test.len()), (10, 3));
        assert_eq!(p.train.shape(), [3, 32, 32]);
        assert_eq!(p.train.num_classes(), 10);
        assert_eq!(p.train.labels(), &[1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
        assert_eq!(p.test.labels(), &[7, 7, 7]);
        let s = p.test.get(2).unwrap();
        assert_eq!(
            (s.pixels[0], s.pixels[1024], s.pixels[2048], s.pixels[3071]),
            (22, 122, 222, 222)
        );
        assert_eq!(p.train.class_names().unwrap()[3], "class3");
        assert!(p.test.source().ends_with("test_batch.bin"));
    }

    #[test]
    fn cifar100_uses_fine_label() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("train.bin"), records(4, &[vec![3, 42], vec![19, 99]]))
            .unwrap();
        let ds = open(t.path(), Split::Train, &OpenOptions::default()).unwrap();
        assert_eq!(ds.format(), Format::Cifar100);
        assert_eq!(ds.num_classes(), 100);
        assert_eq!(ds.labels(), &[42, 99, 42, 99]);
        assert_eq!(ds.get(1).unwrap().pixels[1500], 111);
        let e = open(t.path(), Split::Test, &OpenOptions::default()).unwrap_err().to_string();
        assert!(e.contains("test.bin"), "{e}");
    }

    #[test]
    fn errors_name_the_batch_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("test_batch.bin"), records(2, &[vec![10]])).unwrap();
        let e = open_cifar10(d, Split::Test).unwrap_err();
        assert!(
            matches!(e, DataError::LabelOutOfRange { label: 10, num_classes: 10, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("test_batch.bin"));

        let mut b = records(2, &[vec![1]]);
        b.truncate(3073 + 100);
        std::fs::write(d.join("test_batch.bin"), b).unwrap();
        let e = open_cifar10(d, Split::Test).unwrap_err();
        assert!(matches!(e, DataError::Truncated { expected: 6146, actual: 3173, .. }), "{e:?}");
        assert!(e.to_string().contains("test_batch.bin"));

        std::fs::write(d.join("test_batch.bin"), b"").unwrap();
        assert!(matches!(open_cifar10(d, Split::Test), Err(DataError::Empty { .. })));

        std::fs::write(d.join("data_batch_1.bin"), records(1, &[vec![1]])).unwrap();
        std::fs::write(d.join("data_batch_2.bin"), records(1, &[vec![1]])).unwrap();
        let e = open_cifar10(d, Split::Train).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, DataError::Missing { .. }));
        assert!(
            m.contains("data_batch_3.bin")
                && m.contains("data_batch_5.bin")
                && !m.contains("data_batch_2.bin"),
            "{m}"
        );

        let e = open_cifar100(d, Split::Train).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains(CIFAR100_SUBDIR), "{e}");
    }
}
