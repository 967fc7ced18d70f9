//! Where the time of an explanation goes: named spans that synchronise the device at both ends
//! and add up their wall time. Off unless `tokenlens bench --profile` (or
//! `TOKENLENS_PROFILE=1`) turns it on; synchronising after every stage serialises the GPU and
//! rules out CUDA graphs, so profiled runs are slower than plain ones and measure the eager path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Turns profiling on for this process (also when `TOKENLENS_PROFILE=1` is set).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    static FROM_ENVIRONMENT: OnceLock<bool> = OnceLock::new();
    ENABLED.load(Ordering::Relaxed)
        || *FROM_ENVIRONMENT
            .get_or_init(|| std::env::var("TOKENLENS_PROFILE").is_ok_and(|v| v.trim() == "1"))
}

/// A running span; its time is added when it is dropped.
pub struct Span {
    name: &'static str,
    device: Device,
    start: Instant,
}

/// Starts the span `name` when profiling is on (the device's queued work is finished first, so
/// that it is not billed to this span).
pub fn span(name: &'static str, device: &Device) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let _ = device.synchronize();
    Some(Span {
        name,
        device: device.clone(),
        start: Instant::now(),
    })
}

impl Drop for Span {
    fn drop(&mut self) {
        let _ = self.device.synchronize();
        let elapsed = self.start.elapsed();
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        let entry = totals.entry(self.name).or_default();
        entry.0 += elapsed;
        entry.1 += 1;
    }
}

/// One span's totals since the last [`take`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanTotal {
    pub name: String,
    pub total_ms: f64,
    pub calls: u64,
}

/// The totals of every span so far, by name, and starts counting afresh.
pub fn take() -> Vec<SpanTotal> {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *totals)
        .into_iter()
        .map(|(name, (total, calls))| SpanTotal {
            name: name.to_string(),
            total_ms: total.as_secs_f64() * 1000.0,
            calls,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_by_name_and_take_starts_afresh() {
        enable();
        let device = Device::Cpu;
        take();
        for _ in 0..3 {
            let _span = span("test.sleep", &device);
            std::thread::sleep(Duration::from_millis(2));
        }
        let totals = take();
        let sleep = totals.iter().find(|t| t.name == "test.sleep").unwrap();
        assert_eq!(sleep.calls, 3);
        assert!(sleep.total_ms >= 6.0, "{sleep:?}");
        assert!(take().iter().all(|t| t.name != "test.sleep"));
    }
}
