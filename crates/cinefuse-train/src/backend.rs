//! Backend and device selection: `auto` picks wgpu on a real GPU and the pure-Rust `flex`
//! backend otherwise; `lavapipe` forces wgpu onto the CPU adapter to test the GPU code path.

use anyhow::{Context, Result, bail};
use burn::prelude::*;

use cinefuse_data::{MovieBatcher, Prepared};

use crate::config::{BackendConfig, BackendKind, Precision};

/// The chosen device and a human-readable description for the log.
#[derive(Clone)]
pub struct Selected {
    pub device: Device,
    pub kind: BackendKind,
    pub description: String,
}

/// Parses a backend name from the command line.
pub fn parse_backend(name: &str) -> Result<BackendKind> {
    Ok(match name {
        "auto" => BackendKind::Auto,
        "flex" | "cpu" => BackendKind::Flex,
        "wgpu" => BackendKind::Wgpu,
        "lavapipe" => BackendKind::Lavapipe,
        "cuda" => BackendKind::Cuda,
        other => bail!("--backend {other:?}: expected auto, flex, wgpu, lavapipe or cuda"),
    })
}

/// Whether the machine exposes a GPU device node at all (cheap check before touching wgpu).
fn gpu_device_node_present() -> bool {
    let nvidia = std::path::Path::new("/dev/nvidia0").exists();
    let dri = std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        })
        .unwrap_or(false);
    nvidia || dri || cfg!(target_os = "macos") || cfg!(target_os = "windows")
}

#[cfg(feature = "wgpu")]
fn real_gpu(index: usize) -> Option<Selected> {
    use burn::tensor::DeviceType;
    if !gpu_device_node_present() {
        return None;
    }
    let cards: Vec<Device> = Device::enumerate(DeviceType::Wgpu)
        .into_iter()
        .filter(|d| d.identity().is_some_and(|id| id.physical.is_some()))
        .collect();
    let device = cards.into_iter().nth(index)?;
    let name = device.identity().map(|i| i.name).unwrap_or_default();
    Some(Selected {
        device,
        kind: BackendKind::Wgpu,
        description: format!("wgpu on {name}"),
    })
}

#[cfg(not(feature = "wgpu"))]
fn real_gpu(_index: usize) -> Option<Selected> {
    let _ = gpu_device_node_present;
    None
}

fn flex() -> Selected {
    Selected {
        device: Device::flex(),
        kind: BackendKind::Flex,
        description: "flex (pure-Rust CPU backend)".into(),
    }
}

pub fn select_device(cfg: &BackendConfig) -> Result<Selected> {
    match cfg.kind {
        BackendKind::Auto => Ok(real_gpu(cfg.device_index).unwrap_or_else(flex)),
        BackendKind::Flex => Ok(flex()),
        BackendKind::Wgpu => {
            wgpu_device(burn::tensor::DeviceKind::DefaultDevice, BackendKind::Wgpu)
        }
        BackendKind::Lavapipe => wgpu_device(burn::tensor::DeviceKind::Cpu, BackendKind::Lavapipe),
        BackendKind::Cuda => cuda_device(cfg.device_index),
    }
}

/// The devices of a run, lead first: one, or one per `backend.devices` entry for
/// data-parallel training.
pub fn select_devices(cfg: &BackendConfig) -> Result<Vec<Selected>> {
    let indices = cfg.device_indices();
    if let [index] = indices[..] {
        let one = BackendConfig {
            device_index: index,
            devices: Vec::new(),
            ..cfg.clone()
        };
        return Ok(vec![select_device(&one)?]);
    }
    let gpu = |i: usize| {
        real_gpu(i).with_context(|| {
            format!("backend.devices = {indices:?}: there is no GPU {i} for wgpu on this machine")
        })
    };
    match cfg.kind {
        BackendKind::Flex => bail!(
            "backend.devices = {indices:?}: flex is one CPU device; data-parallel training \
             needs several GPUs (backend.kind = \"wgpu\" or \"cuda\")"
        ),
        BackendKind::Auto | BackendKind::Wgpu => indices.iter().map(|&i| gpu(i)).collect(),
        BackendKind::Lavapipe => lavapipe_pair(&indices),
        BackendKind::Cuda => indices.iter().map(|&i| cuda_device(i)).collect(),
    }
}

/// Lavapipe has one adapter, but wgpu opens it as two independent devices (`Cpu` and the
/// default device, which is lavapipe too where there is no GPU): enough to run the
/// multi-device code path on a machine without GPUs. Not for speed: both share the CPU.
fn lavapipe_pair(indices: &[usize]) -> Result<Vec<Selected>> {
    use burn::tensor::DeviceKind;
    if indices.iter().any(|&i| i > 1) {
        bail!(
            "backend.devices = {indices:?}: lavapipe offers devices 0 and 1 (two handles on the CPU adapter)"
        );
    }
    let cpu = wgpu_device(DeviceKind::Cpu, BackendKind::Lavapipe)?;
    let default = wgpu_device(DeviceKind::DefaultDevice, BackendKind::Lavapipe)?;
    if default.description != cpu.description {
        bail!(
            "backend.devices = {indices:?}: lavapipe's second device is wgpu's default device, \
             which is {} here, not the CPU adapter; set CUBECL_WGPU_DEFAULT_DEVICE=Cpu",
            default.description
        );
    }
    let pair = [cpu, default];
    Ok(indices.iter().map(|&i| pair[i].clone()).collect())
}

/// "wgpu on X", or "wgpu on X × 2 (data parallel)" when all devices are alike.
pub fn describe(selected: &[Selected]) -> String {
    let first = &selected[0].description;
    match selected.len() {
        1 => first.clone(),
        n if selected.iter().all(|s| &s.description == first) => {
            format!("{first} × {n} (data parallel)")
        }
        _ => {
            let all: Vec<&str> = selected.iter().map(|s| s.description.as_str()).collect();
            format!("{} (data parallel)", all.join(" + "))
        }
    }
}

/// Refuses a training precision the device cannot compute in.
pub fn check_precision(selected: &Selected, precision: Precision) -> Result<()> {
    use burn::tensor::FloatDType;
    let dtype = match precision {
        Precision::F32 => return Ok(()),
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    };
    let name = precision.name();
    if selected.kind == BackendKind::Flex {
        bail!(
            "train.precision = \"{name}\": mixed precision is for GPU backends; flex trains in \
             f32 (its CPU kernels are f32 only). Use precision = \"f32\" or a GPU backend"
        );
    }
    if !selected.device.supports_dtype(dtype) {
        bail!(
            "train.precision = \"{name}\": {} cannot compute in {name}{}",
            selected.description,
            if selected.kind == BackendKind::Lavapipe {
                " (lavapipe has f16, not bf16)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(feature = "wgpu")]
fn wgpu_device(kind: burn::tensor::DeviceKind, backend: BackendKind) -> Result<Selected> {
    let device = Device::wgpu(kind);
    let name = device
        .identity()
        .map(|i| i.name)
        .unwrap_or_else(|| "unknown adapter".into());
    Ok(Selected {
        device,
        kind: backend,
        description: format!("wgpu on {name}"),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_kind: burn::tensor::DeviceKind, _backend: BackendKind) -> Result<Selected> {
    bail!("this build of cinefuse has no wgpu backend; rebuild with `--features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Selected> {
    Ok(Selected {
        device: Device::cuda(index),
        kind: BackendKind::Cuda,
        description: format!("cuda device {index}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Selected> {
    bail!("this build of cinefuse has no CUDA backend; rebuild with `--features cuda`")
}

/// The batcher a run's config feeds its model with (training, validation, `eval`, `bench`): the
/// prepared data's poster size and token cap, plot batches padded to `backend.token_bucket`
/// when the config sets it.
pub fn config_batcher(backend: &BackendConfig, prepared: &Prepared) -> MovieBatcher {
    MovieBatcher {
        token_bucket: backend.token_bucket,
        ..prepared.preprocessor.batcher()
    }
}
