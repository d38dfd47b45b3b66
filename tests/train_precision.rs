//! Training arithmetic options: channels-last layout computes the same function;
//! bf16/fp16 mixed precision stays close to fp32 with fp32 master weights; fp16
//! loss scaling skips overflowing steps and halves the scale.
use rlal::analysis::{import, ImportOptions};
use rlal::train::optim::{LossScale, Sgd, SgdConfig};
use rlal::train::recipe::Precision;
use rlal::train::Net;
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor};

fn net(path: &str) -> Net {
    let (g, a) = import(Path::new(path), &ImportOptions::default()).unwrap();
    Net::new(&g, &a, Device::Cpu).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (a - b).abs().max().double_value(&[]) / scale
}

#[test]
fn channels_last_computes_the_same_function_in_nhwc_layout() {
    tch::set_num_threads(2);
    for path in ["graphs/resnet20_cifar_bn.onnx", "graphs/mobilenetv2_cifar_bn.onnx"] {
        let mut n = net(path);
        tch::manual_seed(3);
        let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let want = tch::no_grad(|| n.forward_t(&x, false).unwrap());
        n.set_compute(Precision::Fp32, true);
        assert!(n.channels_last());
        // Conv weights now have NHWC strides (channel stride 1) and the function is unchanged.
        let w = n.trainable().into_iter().map(|(_, t)| t).find(|t| t.dim() == 4).unwrap();
        assert_eq!(w.stride()[1], 1, "{path}: weight strides {:?}", w.stride());
        let got = tch::no_grad(|| n.forward_t(&x, false).unwrap());
        assert!(
            max_rel(&got, &want) <= 1e-4,
            "{path}: channels-last differs by {}",
            max_rel(&got, &want)
        );
        // Training mode and the exported (contiguous) graph work as well.
        let y = n.forward_t(&x, true).unwrap();
        y.sum(Kind::Float).backward();
        let g = n.export().unwrap();
        let back = Net::new(
            &g,
            &import(Path::new(path), &ImportOptions::default()).unwrap().1,
            Device::Cpu,
        )
        .unwrap();
        let again = tch::no_grad(|| back.forward_t(&x, false).unwrap());
        let now = tch::no_grad(|| n.forward_t(&x, false).unwrap());
        assert!(max_rel(&again, &now) <= 1e-4);
    }
}

#[test]
fn mixed_precision_stays_close_to_fp32_with_fp32_weights() {
    tch::set_num_threads(2);
    let mut n = net("graphs/mnist_cnn_bn.onnx");
    tch::manual_seed(5);
    let x = Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let want = tch::no_grad(|| n.forward_t(&x, false).unwrap());
    for (p, tol) in [(Precision::Bf16, 3e-2), (Precision::Fp16, 5e-3)] {
        n.set_compute(p, false);
        let got = tch::no_grad(|| n.forward_t(&x, false).unwrap());
        assert_eq!(got.kind(), Kind::Float, "{p:?}: outputs are fp32");
        let d = max_rel(&got, &want);
        assert!(d <= tol && d > 0.0, "{p:?}: differs from fp32 by {d}");
    }
    for p in [Precision::Bf16, Precision::Fp16] {
        n.set_compute(p, false);
        // Gradients reach the fp32 master weights (train mode also moves the BN statistics).
        let y = n.forward_t(&x, true).unwrap();
        y.sum(Kind::Float).backward();
        for (name, t) in n.trainable() {
            assert_eq!(t.kind(), Kind::Float, "{name}");
            assert!(t.grad().defined(), "{name} has no gradient under {p:?}");
            let _ = t.grad().zero_();
        }
    }
}

#[test]
fn fp16_loss_scaling_skips_overflow_and_learns() {
    tch::set_num_threads(2);
    let mut n = net("graphs/mnist_cnn_bn.onnx");
    n.set_compute(Precision::Fp16, false);
    let mut sgd =
        Sgd::new(n.trainable(), SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 0.0 })
            .with_loss_scaling(true);
    assert_eq!(sgd.loss_scale().unwrap().scale, LossScale::INIT);
    tch::manual_seed(7);
    let x = Tensor::randn([16, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
    // An infinite loss overflows: the step is skipped (weights unchanged) and the scale halves.
    let before: Vec<Tensor> = n.trainable().iter().map(|(_, t)| t.copy()).collect();
    sgd.zero_grad();
    let loss = n.forward_t(&x, true).unwrap().sum(Kind::Float) * f64::INFINITY;
    sgd.backward(&loss).unwrap();
    sgd.step(0.1);
    let s = sgd.loss_scale().unwrap();
    assert_eq!((s.scale, s.skipped), (LossScale::INIT / 2.0, 1));
    for ((_, t), b) in n.trainable().iter().zip(&before) {
        assert!(t.equal(b), "a skipped step changed the weights");
    }
    // Normal steps: unscaled gradients, the loss on a fixed batch goes down.
    let ce = |n: &Net| {
        n.forward_t(&x, true).unwrap().cross_entropy_loss::<Tensor>(
            &y,
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
    };
    let first = ce(&n).double_value(&[]);
    for _ in 0..15 {
        sgd.zero_grad();
        let l = ce(&n);
        sgd.backward(&l).unwrap();
        sgd.step(0.05);
    }
    let last = ce(&n).double_value(&[]);
    assert!(last < 0.7 * first, "fp16 training did not learn: loss {first} -> {last}");
    assert_eq!(sgd.loss_scale().unwrap().skipped, 1);
}

#[test]
fn inplace_activations_compute_the_same_loss_and_gradients() {
    // Relu/ReLU6 after conv/BN/Add run in place (like PyTorch's inplace=True modules); the
    // training step must be exactly the one of out-of-place activations.
    tch::set_num_threads(2);
    for (path, want_inplace) in
        [("graphs/resnet20_cifar.onnx", 19), ("graphs/mobilenetv2_cifar.onnx", 35)]
    {
        let (mut g, mut a) = import(Path::new(path), &ImportOptions::default()).unwrap();
        rlal::train::setup::apply_insert_bn(
            &mut g,
            &mut a,
            rlal::train::recipe::InsertBn::Auto,
            None,
        )
        .unwrap();
        let mut n = Net::new(&g, &a, Device::Cpu).unwrap();
        assert_eq!(n.inplace_activations(), want_inplace, "{path}");
        tch::manual_seed(5);
        let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[1i64, 3, 5, 7]);
        let run = |n: &Net| {
            let loss = n.forward_t(&x, true).unwrap().cross_entropy_loss::<Tensor>(
                &y,
                None,
                Reduction::Mean,
                -100,
                0.0,
            );
            for (_, p) in n.trainable() {
                let mut gr = p.grad();
                if gr.defined() {
                    let _ = gr.zero_();
                }
            }
            loss.backward();
            let grads: Vec<Tensor> =
                n.trainable().into_iter().map(|(_, p)| p.grad().copy()).collect();
            (loss.double_value(&[]), grads)
        };
        let (l1, g1) = run(&n);
        n.set_inplace_activations(false);
        assert_eq!(n.inplace_activations(), 0);
        let (l2, g2) = run(&n);
        assert!((l1 - l2).abs() <= 1e-6 * l2.abs().max(1.0), "{path}: loss {l1} vs {l2}");
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            assert!(max_rel(a, b) <= 1e-5, "{path}: gradient {i} differs by {}", max_rel(a, b));
        }
    }
}
