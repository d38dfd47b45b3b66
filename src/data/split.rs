//! The held-out reward subset: a deterministic, class-balanced split of training
//! images into `(train_idx, holdout_idx)`.
//!
//! Rule, for `n` holdout images over `K` classes and a seed:
//! * every class gets `⌊n / K⌋` holdout images; the `n mod K` remaining ones go to
//!   the first `n mod K` classes of a seeded permutation of `0..K`
//!   (`Rng::stream(seed, Stream::Holdout).fork(0)`, Fisher–Yates);
//! * within class `c`, its image indices (ascending) are shuffled with
//!   `Rng::stream(seed, Stream::Holdout).fork(1 + c)` and the first quota are held out;
//! * both returned lists are sorted ascending and are disjoint; together they cover
//!   every index. A class whose quota is `q > 0` needs at least `q + 1` images (one
//!   must stay for training), else [`DataError::TooFewImages`].

use std::path::Path;

use super::{DataError, Dataset};
use crate::rng::{Rng, Stream};

/// Splits `ds` into `(train_idx, holdout_idx)` with `n` class-balanced holdout
/// images (see the module docs). Errors name the dataset's label file.
pub fn split_holdout(
    ds: &dyn Dataset,
    n: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    split_holdout_labels(ds.labels(), ds.num_classes(), n, seed, ds.label_source())
}

/// [`split_holdout`] on a bare label list; `source` names the data in errors.
pub fn split_holdout_labels(
    labels: &[u32],
    num_classes: usize,
    n: usize,
    seed: u64,
    source: &Path,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if num_classes == 0 {
        return Err(DataError::Config {
            path: source.into(),
            reason: "holdout split needs at least one class".into(),
        });
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (index, &label) in labels.iter().enumerate() {
        match by_class.get_mut(label as usize) {
            Some(v) => v.push(index),
            None => {
                return Err(DataError::LabelOutOfRange {
                    path: source.into(),
                    index,
                    label,
                    num_classes,
                })
            }
        }
    }
    let base = Rng::stream(seed, Stream::Holdout);
    let mut classes: Vec<usize> = (0..num_classes).collect();
    base.fork(0).shuffle(&mut classes);
    let mut quota = vec![n / num_classes; num_classes];
    for &c in &classes[..n % num_classes] {
        quota[c] += 1;
    }
    let mut holdout = Vec::with_capacity(n);
    for (c, members) in by_class.iter_mut().enumerate() {
        let q = quota[c];
        if q == 0 {
            continue;
        }
        if members.len() < q + 1 {
            return Err(DataError::TooFewImages {
                path: source.into(),
                class: c as u32,
                have: members.len(),
                need: q,
            });
        }
        base.fork(1 + c as u64).shuffle(members);
        holdout.extend_from_slice(&members[..q]);
    }
    holdout.sort_unstable();
    let mut is_held = vec![false; labels.len()];
    for &i in &holdout {
        is_held[i] = true;
    }
    let train = (0..labels.len()).filter(|&i| !is_held[i]).collect();
    Ok((train, holdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(per_class: &[usize]) -> Vec<u32> {
        // Interleaved so class members are not contiguous.
        let mut v = Vec::new();
        let max = *per_class.iter().max().unwrap();
        for r in 0..max {
            for (c, &n) in per_class.iter().enumerate() {
                if r < n {
                    v.push(c as u32);
                }
            }
        }
        v
    }

    #[test]
    fn balanced_disjoint_and_covering() {
        let l = labels(&[30, 25, 40, 33]);
        let p = Path::new("labels.idx");
        let (train, hold) = split_holdout_labels(&l, 4, 22, 7, p).unwrap();
        assert_eq!(hold.len(), 22);
        let mut counts = [0usize; 4];
        for &i in &hold {
            counts[l[i] as usize] += 1;
        }
        let mut sorted = counts;
        sorted.sort();
        assert_eq!(sorted, [5, 5, 6, 6], "{counts:?}");
        assert!(hold.windows(2).all(|w| w[0] < w[1]));
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<usize> = train.iter().chain(&hold).copied().collect();
        all.sort();
        assert_eq!(all, (0..l.len()).collect::<Vec<_>>());
        // Deterministic; another seed picks other images.
        assert_eq!(split_holdout_labels(&l, 4, 22, 7, p).unwrap(), (train.clone(), hold.clone()));
        assert_ne!(split_holdout_labels(&l, 4, 22, 8, p).unwrap().1, hold);
    }

    #[test]
    fn zero_and_exact_multiples() {
        let l = labels(&[3, 3, 3]);
        let p = Path::new("x");
        let (train, hold) = split_holdout_labels(&l, 3, 0, 1, p).unwrap();
        assert!(hold.is_empty());
        assert_eq!(train.len(), 9);
        let (_, hold) = split_holdout_labels(&l, 3, 6, 1, p).unwrap();
        let mut counts = [0; 3];
        hold.iter().for_each(|&i| counts[l[i] as usize] += 1);
        assert_eq!(counts, [2, 2, 2]);
    }

    #[test]
    fn too_few_images_names_class_and_source() {
        let l = labels(&[10, 2, 10]);
        let e = split_holdout_labels(&l, 3, 6, 1, Path::new("data/x/train-labels")).unwrap_err();
        assert!(matches!(e, DataError::TooFewImages { class: 1, have: 2, need: 2, .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("data/x/train-labels") && m.contains("class 1"), "{m}");
        // A class with no images at all.
        let e = split_holdout_labels(&labels(&[5, 5]), 3, 3, 1, Path::new("y")).unwrap_err();
        assert!(matches!(e, DataError::TooFewImages { class: 2, have: 0, .. }));
        let e = split_holdout_labels(&[0, 5], 3, 0, 1, Path::new("y")).unwrap_err();
        assert!(matches!(e, DataError::LabelOutOfRange { label: 5, index: 1, .. }));
        assert!(split_holdout_labels(&[], 0, 0, 1, Path::new("y")).is_err());
    }

    #[test]
    fn remainder_classes_vary_with_seed() {
        let l = labels(&[10; 10]);
        let p = Path::new("x");
        let mut extra_sets = std::collections::HashSet::new();
        for seed in 0..8 {
            let (_, hold) = split_holdout_labels(&l, 10, 13, seed, p).unwrap();
            let mut counts = [0; 10];
            hold.iter().for_each(|&i| counts[l[i] as usize] += 1);
            assert_eq!(counts.iter().filter(|&&c| c == 2).count(), 3);
            assert_eq!(counts.iter().filter(|&&c| c == 1).count(), 7);
            extra_sets.insert(counts);
        }
        assert!(extra_sets.len() > 1);
    }
}
