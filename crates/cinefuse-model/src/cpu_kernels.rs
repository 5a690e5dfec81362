//! Routes convolutions, training-mode batch norms, softmax, GELU and dropout masks to
//! `cinefuse-kernels` when the tensors are f32 on the flex (CPU) backend, and to Burn's own ops
//! everywhere else (wgpu, CUDA, or shapes the kernels do not cover). Both paths compute the same
//! function; the tests compare them value by value, gradients included.
//!
//! The kernels are plugged in as a Burn backend extension: a trait implemented for `Flex`
//! (forward) and for `Autodiff<Flex>` (forward plus a hand-written backward step).

/// Denormal flushing for the threads that run the kernels (see `cinefuse_kernels::denormals`).
pub use cinefuse_kernels::{flush_denormals, flush_denormals_on_this_thread};

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::{DType, Distribution, TensorData};
use cinefuse_kernels::{BatchStats, Conv2dShape};

/// How many times this thread took each CPU-kernel route. Tests read it to check that the flex
/// path really runs the kernels (and that other backends never do); the routing decision is
/// made on the calling thread, so per-thread counts are exact even with tests in parallel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelRoutes {
    pub conv2d: usize,
    pub batch_norm: usize,
    pub dropout: usize,
    pub softmax: usize,
    pub gelu: usize,
}

thread_local! {
    static ROUTES: std::cell::Cell<KernelRoutes> = const {
        std::cell::Cell::new(KernelRoutes { conv2d: 0, batch_norm: 0, dropout: 0, softmax: 0, gelu: 0 })
    };
}

/// The kernel routes taken on this thread so far.
pub fn kernel_routes() -> KernelRoutes {
    ROUTES.with(|r| r.get())
}

fn count_route(bump: impl FnOnce(&mut KernelRoutes)) {
    ROUTES.with(|r| {
        let mut routes = r.get();
        bump(&mut routes);
        r.set(routes);
    });
}

/// Stride and symmetric zero padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// Convolution without bias, groups = 1, dilation = 1.
    fn cinefuse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Training-mode batch norm over `[B, C, H, W]`: `(output, batch mean, biased batch variance)`.
    fn cinefuse_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// A dropout mask shaped like `like`: `1 / keep` with probability `keep`, else 0. Never
    /// differentiated (a constant factor of the product it scales).
    fn cinefuse_dropout_mask(like: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self>;

    /// Softmax over the last axis.
    fn cinefuse_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The exact (erf) GELU.
    fn cinefuse_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// A flex tensor in contiguous row-major layout (copied only when the layout is strided).
fn values(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// The f32 values of a tensor returned by [`values`].
fn slice(t: &FlexTensor) -> &[f32] {
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("tensor made contiguous above");
    &t.storage::<f32>()[start..end]
}

fn flex_tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn conv_shape(x: &FlexTensor, weight: &FlexTensor, g: ConvGeometry) -> Conv2dShape {
    let [batch, c_in, height, width] = x.layout().shape().dims::<4>();
    let [c_out, w_in, kh, kw] = weight.layout().shape().dims::<4>();
    assert_eq!(
        c_in, w_in,
        "conv2d: input has {c_in} channels, weight expects {w_in}"
    );
    Conv2dShape {
        batch,
        c_in,
        height,
        width,
        c_out,
        kernel: [kh, kw],
        stride: g.stride,
        padding: g.padding,
    }
}

impl CpuKernels for Flex {
    fn cinefuse_conv2d(x: FlexTensor, weight: FlexTensor, g: ConvGeometry) -> FlexTensor {
        let (x, weight) = (values(&x), values(&weight));
        let s = conv_shape(&x, &weight, g);
        let mut out = vec![0.0; s.output_len()];
        cinefuse_kernels::conv2d_forward(&s, slice(&x), slice(&weight), None, &mut out);
        flex_tensor(out, [s.batch, s.c_out, s.out_height(), s.out_width()])
    }

    fn cinefuse_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (output, stats) =
            batch_norm_forward(&values(&x), &values(&gamma), &values(&beta), epsilon);
        let channels = stats.mean.len();
        (
            output,
            flex_tensor(stats.mean, [channels]),
            flex_tensor(stats.var, [channels]),
        )
    }

    fn cinefuse_dropout_mask(like: FlexTensor, keep: f64, seed: u64) -> FlexTensor {
        dropout_mask(&like, keep, seed)
    }

    fn cinefuse_softmax_last(x: FlexTensor) -> FlexTensor {
        let row = *x.layout().shape().last().expect("softmax of a scalar");
        unary_forward(&x, |x, y| cinefuse_kernels::softmax_forward(x, row, y))
    }

    fn cinefuse_gelu(x: FlexTensor) -> FlexTensor {
        unary_forward(&x, cinefuse_kernels::gelu_forward)
    }
}

/// The shared body of the one-input kernels whose output is shaped like their input.
fn unary_forward(x: &FlexTensor, f: impl FnOnce(&[f32], &mut [f32])) -> FlexTensor {
    let x = values(x);
    let shape = x.layout().shape().clone();
    let mut y = vec![0.0; shape.num_elements()];
    f(slice(&x), &mut y);
    FlexTensor::from_data(TensorData::new(y, shape))
}

fn dropout_mask(like: &FlexTensor, keep: f64, seed: u64) -> FlexTensor {
    let shape = like.layout().shape().clone();
    let mut mask = vec![0.0; shape.num_elements()];
    cinefuse_kernels::dropout_mask(&mut mask, keep as f32, seed);
    FlexTensor::from_data(TensorData::new(mask, shape))
}

fn batch_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> (FlexTensor, BatchStats) {
    let shape = x.layout().shape().dims::<4>();
    let [_, channels, h, w] = shape;
    let mut out = vec![0.0; shape.iter().product()];
    let stats = cinefuse_kernels::batch_norm_forward(
        slice(x),
        channels,
        h * w,
        slice(gamma),
        slice(beta),
        epsilon as f32,
        &mut out,
    );
    (flex_tensor(out, shape), stats)
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dout = values(&grads.consume::<Flex>(&ops.node));
        let (x, weight, g) = ops.state;
        let s = conv_shape(&x, &weight, g);
        // The poster batch itself needs no gradient: skip the input pass for the stem.
        if let Some(node) = node_x {
            let mut dx = vec![0.0; s.input_len()];
            cinefuse_kernels::conv2d_backward_input(&s, slice(&weight), slice(&dout), &mut dx);
            grads.register::<Flex>(
                node.id,
                flex_tensor(dx, [s.batch, s.c_in, s.height, s.width]),
            );
        }
        if let Some(node) = node_weight {
            let mut dw = vec![0.0; s.weight_len()];
            cinefuse_kernels::conv2d_backward_weight(&s, slice(&x), slice(&dout), &mut dw);
            let [kh, kw] = s.kernel;
            grads.register::<Flex>(node.id, flex_tensor(dw, [s.c_out, s.c_in, kh, kw]));
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (FlexTensor, FlexTensor, BatchStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = values(&grads.consume::<Flex>(&ops.node));
        let (x, gamma, stats) = ops.state;
        let shape = x.layout().shape().dims::<4>();
        let [_, channels, h, w] = shape;
        let mut dx = vec![0.0; shape.iter().product()];
        let (dgamma, dbeta) = cinefuse_kernels::batch_norm_backward(
            slice(&x),
            slice(&dy),
            channels,
            h * w,
            slice(&gamma),
            &stats,
            &mut dx,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [channels]));
        }
    }
}

/// The shared body of the one-input backward steps whose state is a tensor shaped like the
/// input: `dx = f(state, dy)`.
fn unary_backward(
    ops: Ops<FlexTensor, 1>,
    grads: &mut Gradients,
    f: impl FnOnce(&[f32], &[f32], &mut [f32]),
) {
    let [node_x] = ops.parents;
    let dy = values(&grads.consume::<Flex>(&ops.node));
    if let Some(node) = node_x {
        let shape = ops.state.layout().shape().clone();
        let mut dx = vec![0.0; shape.num_elements()];
        f(slice(&ops.state), slice(&dy), &mut dx);
        grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The softmax output: its gradient needs nothing else.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let row = *ops
            .state
            .layout()
            .shape()
            .last()
            .expect("softmax of a scalar");
        unary_backward(ops, grads, |y, dy, dx| {
            cinefuse_kernels::softmax_backward(y, dy, row, dx)
        });
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary_backward(ops, grads, cinefuse_kernels::gelu_backward);
    }
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn cinefuse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (values(x.primitive()), values(weight.primitive()));
                let out = Flex::cinefuse_conv2d(x.clone(), weight.clone(), g);
                prep.finish((x, weight, g), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::cinefuse_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                g,
            )),
        }
    }

    fn cinefuse_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma) = (values(x.primitive()), values(gamma.primitive()));
        let (output, stats) = batch_norm_forward(&x, &gamma, &values(beta.primitive()), epsilon);
        let channels = stats.mean.len();
        let mean = Self::from_inner(flex_tensor(stats.mean.clone(), [channels]));
        let var = Self::from_inner(flex_tensor(stats.var.clone(), [channels]));
        let output = match prepared {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, stats), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        (output, mean, var)
    }

    fn cinefuse_dropout_mask(like: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self> {
        Self::from_inner(dropout_mask(like.primitive(), keep, seed))
    }

    fn cinefuse_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = Flex::cinefuse_softmax_last(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::cinefuse_softmax_last(x.into_primitive()))
            }
        }
    }

    fn cinefuse_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = values(x.primitive());
                let y = Flex::cinefuse_gelu(x.clone());
                prep.finish(x, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::cinefuse_gelu(x.into_primitive())),
        }
    }
}

/// Whether a tensor can take the kernel path: f32 on the flex backend (with or without autodiff).
fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device().inner() == Device::flex()
}

/// The kernel path's geometry for a module, or `None` when it needs Burn's general convolution.
fn kernel_geometry(conv: &Conv2d) -> Option<ConvGeometry> {
    if conv.groups != 1 || conv.dilation != [1, 1] || conv.bias.is_some() {
        return None;
    }
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    Some(ConvGeometry {
        stride: conv.stride,
        padding,
    })
}

/// `conv.forward(x)`, on the CPU kernels where they apply.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match kernel_geometry(conv) {
        Some(g) if on_flex_f32(&x) => {
            count_route(|r| r.conv2d += 1);
            Tensor::from_dispatch(<Dispatch as CpuKernels>::cinefuse_conv2d(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                g,
            ))
        }
        _ => conv.forward(x),
    }
}

/// `norm.forward(x)`, on the CPU kernels in training mode. Updates the running statistics the
/// same way Burn's `BatchNorm` does (momentum-weighted, biased batch variance).
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    if !training || !on_flex_f32(&x) {
        return norm.forward(x);
    }
    count_route(|r| r.batch_norm += 1);
    let (output, mean, var) = <Dispatch as CpuKernels>::cinefuse_batch_norm_train(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    let device = mean.device();
    let m = norm.momentum;
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch.detach().mul_scalar(m))
            .detach()
    };
    norm.running_mean
        .update(update(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(update(norm.running_var.value_sync(), var));
    Tensor::from_dispatch(output)
}

/// `layer.forward(x)`: in training, each element kept with probability `1 − prob` and scaled by
/// `1 / (1 − prob)`. On flex the mask comes from the parallel counter-based generator, seeded
/// from the device's RNG, so a seeded run stays reproducible.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    if !on_flex_f32(&x) {
        return layer.forward(x);
    }
    count_route(|r| r.dropout += 1);
    let mask = <Dispatch as CpuKernels>::cinefuse_dropout_mask(
        x.clone().detach().into_dispatch(),
        1.0 - layer.prob,
        draw_seed(&device),
    );
    x * Tensor::from_dispatch(mask)
}

/// 48 random bits from the device's (seedable) generator.
fn draw_seed(device: &Device) -> u64 {
    Tensor::<1>::random([2], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .iter::<f32>()
        .map(|v| (v * (1u32 << 24) as f32) as u64)
        .fold(0u64, |acc, v| (acc << 24) | v)
}

/// `softmax(x, dim)`; on flex, over the last axis, one fused pass with a vectorized `exp`.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 == D && on_flex_f32(&x) {
        count_route(|r| r.softmax += 1);
        Tensor::from_dispatch(<Dispatch as CpuKernels>::cinefuse_softmax_last(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::softmax(x, dim)
    }
}

/// The exact GELU, `x · Φ(x)`; on flex, one fused pass with a vectorized `erf`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex_f32(&x) {
        count_route(|r| r.gelu += 1);
        Tensor::from_dispatch(<Dispatch as CpuKernels>::cinefuse_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}
