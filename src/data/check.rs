//! Compatibility checks between a dataset and a model's input and output.

use super::{DataError, Dataset};

/// Checks that the dataset's samples have the model input shape `[C, H, W]`.
///
/// The error ([`DataError::ShapeMismatch`]) names the dataset file or folder, both
/// shapes, and whether the channel count, the size or both differ.
pub fn check_input(ds: &dyn Dataset, model: [usize; 3]) -> Result<(), DataError> {
    let have = ds.shape();
    if have == model {
        return Ok(());
    }
    let mut parts = Vec::new();
    if have[0] != model[0] {
        parts.push(format!("channel count differs ({} vs {})", have[0], model[0]));
    }
    if have[1..] != model[1..] {
        parts.push(format!(
            "image size differs ({}x{} vs {}x{})",
            have[1], have[2], model[1], model[2]
        ));
    }
    Err(DataError::ShapeMismatch {
        path: ds.source().into(),
        dataset: have,
        model,
        detail: parts.join(" and "),
    })
}

/// Checks that every label is below the model's class count `num_classes`.
///
/// The error ([`DataError::LabelOutOfRange`]) names the label file or folder, the
/// first offending sample and its label.
pub fn check_labels(ds: &dyn Dataset, num_classes: usize) -> Result<(), DataError> {
    match ds.labels().iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
        None => Ok(()),
        Some((index, &label)) => Err(DataError::LabelOutOfRange {
            path: ds.label_source().into(),
            index,
            label,
            num_classes,
        }),
    }
}

/// [`check_input`] then [`check_labels`].
pub fn check_model(
    ds: &dyn Dataset,
    input: [usize; 3],
    num_classes: usize,
) -> Result<(), DataError> {
    check_input(ds, input)?;
    check_labels(ds, num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Format, InMemoryDataset};
    use std::path::PathBuf;

    fn ds() -> InMemoryDataset {
        InMemoryDataset::new(
            Format::Idx,
            PathBuf::from("d/train-images-idx3-ubyte.gz"),
            PathBuf::from("d/train-labels-idx1-ubyte.gz"),
            [1, 28, 28],
            vec![0; 3 * 784],
            vec![0, 9, 4],
            10,
            None,
        )
        .unwrap()
    }

    #[test]
    fn shape_mismatch_messages() {
        let d = ds();
        check_input(&d, [1, 28, 28]).unwrap();
        let e = check_input(&d, [3, 28, 28]).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte.gz")
                && e.contains("1x28x28")
                && e.contains("3x28x28"),
            "{e}"
        );
        assert!(e.contains("channel count") && !e.contains("image size"), "{e}");
        let e = check_input(&d, [1, 32, 32]).unwrap_err().to_string();
        assert!(e.contains("image size differs (28x28 vs 32x32)") && !e.contains("channel"), "{e}");
        let e = check_input(&d, [3, 32, 32]).unwrap_err().to_string();
        assert!(e.contains("channel count") && e.contains("image size"), "{e}");
    }

    #[test]
    fn labels_vs_model_classes() {
        let d = ds();
        check_labels(&d, 10).unwrap();
        let e = check_labels(&d, 5).unwrap_err();
        assert!(matches!(e, DataError::LabelOutOfRange { index: 1, label: 9, num_classes: 5, .. }));
        let m = e.to_string();
        assert!(m.contains("train-labels-idx1-ubyte.gz") && m.contains("label 9"), "{m}");
        assert!(check_model(&d, [1, 28, 28], 10).is_ok());
        assert!(check_model(&d, [1, 28, 28], 9).is_err());
    }
}
