//! CPU kernels for the layers that dominate cinefuse's training step on the CPU: the poster
//! CNN's convolutions and batch norms, and dropout masks. Plain functions over `f32` slices (NCHW), parallel over
//! the batch with rayon, so they can be tested against naive references without Burn; the Burn
//! glue that makes them differentiable lives in `cinefuse-model`.

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod denormals;
pub mod dropout;
mod simd;

pub use activation::{gelu_backward, gelu_forward, softmax_backward, softmax_forward};
pub use batch_norm::{BatchStats, batch_norm_backward, batch_norm_forward};
pub use conv2d::{
    Conv2dShape, conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight,
    conv2d_forward,
};
pub use denormals::{flush_denormals, flush_denormals_on_this_thread};
pub use dropout::dropout_mask;
