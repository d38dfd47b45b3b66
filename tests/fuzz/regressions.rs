//! Panics the fuzzer found, kept as plain cases.
use super::models::{bases, dims_of};
use super::recipes::recipe_pipeline;
use super::{quiet_panics, root};
use prost::Message;
use rlal::onnx::pb;
use std::path::Path;

#[test]
fn regressions() {
    quiet_panics();
    // Dims whose element count fits but whose byte count overflows (src/onnx/tensor.rs).
    let mut m = bases(&["mnist_cnn.onnx"]).remove(0).model;
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 62];
    let e = rlal::analysis::import_bytes(
        &m.encode_to_vec(),
        Path::new("big.onnx"),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("big.onnx") && e.contains("overflow"), "{e}");
    // Input dims of i64::MAX: shape and MACs arithmetic overflowed (Flatten, Slice, the cost model).
    for (file, axis) in
        [("resnet20_cifar_bn.onnx", 2), ("mnist_cnn.onnx", 3), ("resnet20_mnist.onnx", 0)]
    {
        let mut m = bases(&[file]).remove(0).model;
        let dims = dims_of(&mut m.graph.as_mut().unwrap().input[0]).unwrap();
        dims[axis] = pb::tensor_shape_proto::Dimension {
            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(i64::MAX)),
            denotation: None,
        };
        let e =
            rlal::analysis::import_bytes(&m.encode_to_vec(), Path::new(file), &Default::default())
                .unwrap_err()
                .to_string();
        assert!(e.contains(file) && e.contains("elements, more than"), "{e}");
    }
    // A conv group near i64's limits overflowed the channel check (src/ir/ops/conv.rs).
    for group in [1 << 40, i64::MAX, -3] {
        let mut m = bases(&["resnet20_mnist.onnx"]).remove(0).model;
        let conv = m
            .graph
            .as_mut()
            .unwrap()
            .node
            .iter_mut()
            .find(|n| n.op_type.as_deref() == Some("Conv"))
            .unwrap();
        conv.attribute.retain(|a| a.name.as_deref() != Some("group"));
        conv.attribute.push(pb::AttributeProto {
            name: Some("group".into()),
            r#type: Some(2),
            i: Some(group),
            ..Default::default()
        });
        let e = rlal::analysis::import_bytes(
            &m.encode_to_vec(),
            Path::new("group.onnx"),
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("group.onnx") && e.contains("group must be in 1..="), "{e}");
    }
    // Epoch counts that overflow the step arithmetic (src/search/recipe.rs, the trainer).
    let base: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("recipes/quickstart.yaml")).unwrap(),
    )
    .unwrap();
    let huge = serde_yaml::Value::from(u64::MAX);
    for (fields, field) in [
        (
            &[
                ("search", "weights-only-epochs", huge.clone()),
                ("search", "buffer-epochs", 1.into()),
            ][..],
            "epochs",
        ),
        (&[("training", "epochs", huge.clone())][..], "training.epochs"),
        (&[("finetune", "epochs", huge.clone())][..], "finetune.epochs"),
    ] {
        let mut v = base.clone();
        for (section, key, value) in fields {
            v[*section][*key] = value.clone();
        }
        let text = serde_yaml::to_string(&v).unwrap();
        let e = rlal::search::recipe::Recipe::parse(&text).and_then(|r| r.check()).unwrap_err();
        assert!(e.to_string().contains(field), "{fields:?}: {e}");
        recipe_pipeline(&text);
    }
    let e = rlal::train::recipe::Recipe::parse("training:\n  epochs: 18446744073709551615\n")
        .unwrap_err();
    assert_eq!(e.field_name(), Some("training.epochs"), "{e}");
}
