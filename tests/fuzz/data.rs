//! Datasets: corrupted MNIST IDX and CIFAR binary files, image folders with garbage.
use super::{cases, seed, Failures, DEFAULT_CASES};
use rlal::rng::Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One byte-level mutation of a data file.
pub(super) fn mutate_file(b: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    let len = b.len().max(1);
    // Headers matter most: the first 16 bytes half of the time.
    let p = if rng.bernoulli(0.5) { rng.below_usize(16.min(len)) } else { rng.below_usize(len) };
    match rng.below_usize(6) {
        0 => {
            b.truncate(p);
            "truncated"
        }
        1 => {
            b.truncate(len - 1);
            "one byte short"
        }
        2 => {
            if let Some(x) = b.get_mut(p) {
                *x ^= 1 << rng.below_usize(8);
            }
            "bit flip"
        }
        3 => {
            for x in b.iter_mut().skip(p & !3).take(4) {
                *x = 0xff;
            }
            "0xffffffff"
        }
        4 => {
            b.clear();
            "empty"
        }
        _ => {
            let junk: Vec<u8> =
                (0..1 + rng.below_usize(40)).map(|_| rng.next_u32() as u8).collect();
            b.splice(p.min(b.len())..p.min(b.len()), junk);
            "garbage"
        }
    }
}

/// A small valid dataset in `dir` (format 0: IDX, 1: CIFAR-10, 2: CIFAR-100, 3: image folder);
/// returns the files that may be corrupted.
fn write_dataset(dir: &Path, format: usize, rng: &mut Rng) -> Vec<PathBuf> {
    let n = 3 + rng.below_usize(5);
    let px =
        |len: usize, rng: &mut Rng| -> Vec<u8> { (0..len).map(|_| rng.next_u32() as u8).collect() };
    match format {
        0 => {
            let gz = rng.bernoulli(0.3);
            let ext = if gz { ".gz" } else { "" };
            for prefix in ["train", "t10k"] {
                let img = dir.join(format!("{prefix}-images-idx3-ubyte{ext}"));
                let lab = dir.join(format!("{prefix}-labels-idx1-ubyte{ext}"));
                rlal::data::idx::write_images(&img, 6, 5, &px(n * 30, rng), gz).unwrap();
                rlal::data::idx::write_labels(
                    &lab,
                    &(0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>(),
                    gz,
                )
                .unwrap();
            }
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
        }
        1 | 2 => {
            let (names, labels): (Vec<String>, usize) = if format == 1 {
                (
                    (1..=5)
                        .map(|i| format!("data_batch_{i}.bin"))
                        .chain(["test_batch.bin".into()])
                        .collect(),
                    1,
                )
            } else {
                (vec!["train.bin".into(), "test.bin".into()], 2)
            };
            for name in &names {
                let mut b = Vec::new();
                for i in 0..n {
                    b.extend(std::iter::repeat_n((i % 3) as u8, labels));
                    b.extend(px(3072, rng));
                }
                std::fs::write(dir.join(name), b).unwrap();
            }
            names.iter().map(|f| dir.join(f)).collect()
        }
        _ => {
            let mut files = Vec::new();
            for split in ["train", "test"] {
                for class in ["a", "b"] {
                    let d = dir.join(split).join(class);
                    std::fs::create_dir_all(&d).unwrap();
                    for i in 0..2 {
                        let img = image::RgbImage::from_fn(4 + i, 4, |x, y| {
                            image::Rgb([x as u8 * 40, y as u8 * 40, i as u8 * 90])
                        });
                        let p = d.join(format!("{i}.png"));
                        img.save(&p).unwrap();
                        files.push(p);
                    }
                }
            }
            // Garbage files that pose as images, and other clutter.
            let d = dir
                .join(["train", "test"][rng.below_usize(2)])
                .join(["a", "b", "c"][rng.below_usize(3)]);
            std::fs::create_dir_all(&d).unwrap();
            match rng.below_usize(5) {
                0 => std::fs::write(d.join("junk.png"), px(rng.below_usize(300), rng)).unwrap(),
                1 => std::fs::write(d.join("empty.jpg"), b"").unwrap(),
                2 => std::fs::write(d.join("notes.txt"), b"not an image").unwrap(),
                3 => std::fs::create_dir_all(d.join("folder.png")).unwrap(),
                _ => std::fs::write(d.join("huge.png"), huge_png()).unwrap(),
            }
            files
        }
    }
}

/// A PNG header that claims 100000 x 100000 pixels.
fn huge_png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    b.extend(100_000u32.to_be_bytes());
    b.extend(100_000u32.to_be_bytes());
    b.extend([8, 2, 0, 0, 0]);
    let crc = crc32(&b[12..]);
    b.extend(crc.to_be_bytes());
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in data {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// What `rlal train` / `rlal eval` do with a dataset: open it and read every batch.
fn data_pipeline(dir: &Path) {
    use rlal::data::{self, Loader, LoaderConfig, Normalize, OpenOptions, Split, Transform};
    let _ = data::open_both(dir, &OpenOptions::default());
    for split in [Split::Train, Split::Test] {
        let Ok(ds) = data::open(dir, split, &OpenOptions::default()) else { continue };
        let norm = Normalize { scale: 1.0 / 255.0, mean: vec![0.0], std: vec![1.0] };
        let Ok(loader) = Loader::all(
            ds,
            Transform::eval(norm),
            LoaderConfig { batch_size: 3, shuffle: false, workers: 0, ..Default::default() },
        ) else {
            continue;
        };
        for b in loader.epoch(0) {
            let _ = b;
        }
    }
}

#[test]
fn fuzz_datasets() {
    let n = (cases(DEFAULT_CASES) / 5).max(20);
    let mut rng = seed(3);
    let mut fails = Failures::new("data");
    let t0 = Instant::now();
    for case in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let format = rng.below_usize(4);
        let files = write_dataset(dir.path(), format, &mut rng);
        let mut what = vec![["idx", "cifar10", "cifar100", "folder"][format].to_string()];
        for _ in 0..rng.below_usize(3) + (format != 3) as usize {
            let f = &files[rng.below_usize(files.len())];
            let mut b = std::fs::read(f).unwrap();
            what.push(format!(
                "{} {}",
                f.file_name().unwrap().to_string_lossy(),
                mutate_file(&mut b, &mut rng)
            ));
            std::fs::write(f, b).unwrap();
        }
        let p = dir.path().to_path_buf();
        fails.run(case, &what.join(", "), move || data_pipeline(&p));
    }
    fails.check(n, t0);
}
