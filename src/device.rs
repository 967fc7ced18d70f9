//! `cpu`, `cuda` or `cuda:N` to a candle device, with the fix when CUDA is not available.

use candle_core::Device;

use crate::error::{Error, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::Usage(format!("bad device {spec:?}: use cpu, cuda or cuda:N")))?,
        None => {
            return Err(Error::Usage(format!(
                "bad device {spec:?}: use cpu, cuda or cuda:N"
            )));
        }
    };
    cuda_device(ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    // A new device creates cuBLAS and cuRAND state, which synchronises with the GPU: never while
    // another thread records a CUDA graph (see graphs::shared_device_work).
    let _device = crate::graphs::shared_device_work();
    let device = Device::new_cuda(ordinal).map_err(|e| {
        // candle appends a backtrace to driver errors: the first line is the message.
        let reason = e.to_string();
        let reason = reason.lines().next().unwrap_or_default().to_owned();
        Error::Device(format!(
            "no usable CUDA GPU {ordinal} ({reason}); check nvidia-smi and that the CUDA 13 \
             libraries (libcublas, libcurand, libnvrtc) are on the library path, or use --device cpu"
        ))
    })?;
    let keep_events = std::env::var("TOKENLENS_CUDA_EVENT_TRACKING").is_ok_and(|v| v.trim() == "1");
    if let (Device::Cuda(cuda), false) = (&device, keep_events) {
        // cudarc gives every allocation two CUDA events for cross-stream ordering; candle issues
        // all work of a thread on one stream, so they are never waited on, yet creating and
        // destroying them cost four driver calls per tensor op. TOKENLENS_CUDA_EVENT_TRACKING=1
        // keeps them, for measuring the difference.
        // SAFETY: tensors are used on the stream that made them (see docs/cuda.md).
        unsafe { cuda.disable_event_tracking() };
    }
    Ok(device)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device> {
    Err(Error::Device(
        "this tokenlens was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` (see docs/cuda.md) or use --device cpu"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(matches!(parse_device("gpu"), Err(Error::Usage(_))));
        assert!(matches!(parse_device("cuda:x"), Err(Error::Usage(_))));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_rebuild() {
        let err = parse_device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
