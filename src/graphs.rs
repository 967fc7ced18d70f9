//! The device work of one batch of windows: a first step (forward pass) whose logits choose the
//! target classes on the host, then a second step (gradients, relevance, scores) seeded by a
//! one-hot [B, C] tensor. Run eagerly, or — on CUDA, for one window at a time — recorded once
//! as two CUDA graphs and replayed.
//!
//! Why graphs: an explanation is ~3,000 small kernels. Issued one by one from the host, a
//! batch-1 explanation on an H100 took ~30 ms at every length from 16 to 512 tokens, i.e. it
//! was bound by launch overhead, not by the GPU. A replayed graph issues all of them at once.
//!
//! How: candle 0.11 can run under stream capture when its host-to-device parameter cache is on
//! (`enable_cuda_graph_htod_cache`): the first (eager) run of a shape fills that cache, the
//! capture then records the same kernels on input buffers that stay allocated, and a replay
//! copies the new ids, mask and seed into those buffers. Graph allocations keep fixed addresses
//! (`AUTO_FREE_ON_LAUNCH`), so the output tensors held here read the latest replay's values.
//! Each new graph is replayed once on the inputs of its eager run and kept only if it gives the
//! same numbers; any failure falls back to eager execution for that shape, with the reason kept
//! in [`GraphStats`].

use std::cell::Cell;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use candle_core::{DType, Tensor};

use crate::bert::one_hot_like;
use crate::error::Result;

/// Held shared by device work of the engine (device creation, weight loading, forward and
/// backward passes, relevance, explainer batches and drops) and exclusively while a graph is
/// recorded: another thread's CUDA calls during a
/// capture can invalidate it (seen on an H100 when a test ran the model directly beside an
/// explainer that was recording). Re-entrant per thread: a thread that holds it, shared or
/// exclusive, passes through.
static DEVICE_WORK: RwLock<()> = RwLock::new(());

thread_local! {
    static HELD_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Proof of holding [`DEVICE_WORK`] (or of a thread already holding it).
pub struct DeviceWork {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl Drop for DeviceWork {
    fn drop(&mut self) {
        HELD_HERE.with(|held| held.set(held.get() - 1));
    }
}

fn hold(take: impl FnOnce() -> DeviceWork) -> DeviceWork {
    let nested = HELD_HERE.with(|held| {
        held.set(held.get() + 1);
        held.get() > 1
    });
    if nested {
        DeviceWork {
            _shared: None,
            _exclusive: None,
        }
    } else {
        take()
    }
}

/// Shared access for device work; cheap when uncontended.
pub fn shared_device_work() -> DeviceWork {
    hold(|| DeviceWork {
        _shared: Some(DEVICE_WORK.read().unwrap_or_else(|e| e.into_inner())),
        _exclusive: None,
    })
}

/// Whether this thread holds [`DEVICE_WORK`] already (then it cannot take it exclusively).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn holds_device_work() -> bool {
    HELD_HERE.with(|held| held.get() > 0)
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn exclusive_device_work() -> DeviceWork {
    hold(|| DeviceWork {
        _shared: None,
        _exclusive: Some(DEVICE_WORK.write().unwrap_or_else(|e| e.into_inner())),
    })
}

/// Host logits per window to the target class per window.
pub type ChooseTargets<'a> = &'a dyn Fn(&[Vec<f64>]) -> Result<Vec<usize>>;
/// State and one-hot seed to score tensors per method and window.
pub type ScoreTensors<'a, S> = &'a dyn Fn(&S, &Tensor) -> Result<Vec<Vec<Tensor>>>;

/// The two steps of a batch, as closures over the explainer.
pub struct Steps<'a, S> {
    /// Input ids and mask [B, N] (u32) to the state the second step needs.
    pub first: &'a dyn Fn(&Tensor, &Tensor) -> Result<S>,
    /// The logits [B, C] in a state.
    pub logits: &'a dyn Fn(&S) -> &Tensor,
    /// Host logits per window to the target class per window.
    pub choose: ChooseTargets<'a>,
    /// State and one-hot seed [B, C] to score tensors (f64, one per method and window).
    pub second: ScoreTensors<'a, S>,
}

/// Host results of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// Logits per window.
    pub logits: Vec<Vec<f64>>,
    /// Raw scores per method and window (before `methods::finish_scores`).
    pub scores: Vec<Vec<Vec<f64>>>,
}

/// What the graph cache did so far (for `tokenlens bench` and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GraphStats {
    /// Shapes recorded as graphs.
    pub captured: usize,
    /// Batches answered by replaying a graph.
    pub replayed: usize,
    /// Shapes that could not be recorded (run eagerly from then on).
    pub failed: usize,
    /// Why the last recording failed.
    pub last_error: Option<String>,
}

fn read_scores(tensors: &[Vec<Tensor>]) -> Result<Vec<Vec<Vec<f64>>>> {
    tensors
        .iter()
        .map(|per_window| {
            per_window
                .iter()
                .map(|t| Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?))
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

fn logits_and_seed<S>(state: &S, steps: &Steps<S>) -> Result<(Vec<Vec<f64>>, Tensor)> {
    let logits = (steps.logits)(state);
    let host = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let targets = (steps.choose)(&host)?;
    let seed = one_hot_like(logits, &targets)?;
    Ok((host, seed))
}

/// Runs both steps eagerly; also returns the seed (a capture reuses it).
fn eager<S>(ids: &Tensor, mask: &Tensor, steps: &Steps<S>) -> Result<(Computed, Tensor)> {
    let state = (steps.first)(ids, mask)?;
    let (logits, seed) = logits_and_seed(&state, steps)?;
    let scores = read_scores(&(steps.second)(&state, &seed)?)?;
    Ok((Computed { logits, scores }, seed))
}

/// Both steps, eagerly (every device, every batch size).
pub fn run_eager<S>(ids: &Tensor, mask: &Tensor, steps: &Steps<S>) -> Result<Computed> {
    let _shared = shared_device_work();
    Ok(eager(ids, mask, steps)?.0)
}

/// Whether two runs agree: NaN equals NaN, other values within 1e-4 of the largest magnitude
/// (a replay runs the same kernels; this guards against stale or foreign data, not rounding).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn agree(a: &Computed, b: &Computed) -> bool {
    fn close(x: &[f64], y: &[f64]) -> bool {
        let scale = x.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-4 * scale || p == q)
    }
    a.logits.len() == b.logits.len()
        && a.logits.iter().zip(&b.logits).all(|(x, y)| close(x, y))
        && a.scores.len() == b.scores.len()
        && a.scores
            .iter()
            .zip(&b.scores)
            .all(|(p, q)| p.len() == q.len() && p.iter().zip(q).all(|(x, y)| close(x, y)))
}

pub use imp::CudaGraphs;

#[cfg(feature = "cuda")]
mod imp {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use candle_core::cuda_backend::CudaDevice;
    use candle_core::cuda_backend::cudarc::driver::{CudaGraph, CudaStream, sys};
    use candle_core::{Device, Tensor};

    use super::{
        Computed, GraphStats, Steps, agree, eager, exclusive_device_work, holds_device_work,
        logits_and_seed, read_scores, shared_device_work,
    };
    use crate::error::{Error, Result};

    /// Graphs kept at once (least recently used dropped first): each holds its activations and
    /// outputs on the GPU (~100–300 MB for a 512-token MiniLM window).
    const GRAPHS_KEPT: usize = 16;

    /// A recorded graph; CUDA graph execs must not be used from two threads at once, which the
    /// mutex around every [`Entry`] ensures, so moving one between threads is sound.
    struct Graph(CudaGraph);
    // SAFETY: only ever used while the cache's mutex is held (see above).
    unsafe impl Send for Graph {}

    /// One recorded shape. Field order is drop order: outputs before the graphs.
    struct Entry<S> {
        scores: Vec<Vec<Tensor>>,
        state: S,
        first: Graph,
        second: Graph,
        ids: Tensor,
        mask: Tensor,
        seed: Tensor,
        last_used: u64,
    }

    struct Inner<S, K> {
        entries: HashMap<K, Entry<S>>,
        failed: HashSet<K>,
        clock: u64,
        stats: GraphStats,
    }

    pub struct CudaGraphs<S, K> {
        device: CudaDevice,
        inner: Mutex<Inner<S, K>>,
    }

    fn driver(what: &str, e: impl std::fmt::Display) -> Error {
        Error::Device(format!("CUDA graph {what}: {e}"))
    }

    /// Records what `work` issues on `stream` as a graph, returning it with `work`'s result.
    fn capture<T>(
        stream: &std::sync::Arc<CudaStream>,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<(Graph, T)> {
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(|e| driver("capture start", e))?;
        let value = work();
        let graph = stream.end_capture(
            sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
        );
        let outcome = match (value, graph) {
            (Ok(value), Ok(Some(graph))) => return Ok((Graph(graph), value)),
            (Err(e), _) => Err(e),
            (Ok(_), Ok(None)) => Err(Error::Device("CUDA graph capture recorded nothing".into())),
            (Ok(value), Err(e)) => {
                // The value's buffers belong to a graph that never ran: keep them from being
                // freed (a free of such an address is an error of its own).
                std::mem::forget(value);
                Err(driver("capture", e))
            }
        };
        // Frees inside a failed capture fail too; cudarc keeps such errors of destructors and
        // returns them from the next call, which would fail the eager run that follows.
        let _ = stream.context().check_err();
        outcome
    }

    impl<S: Send, K: std::hash::Hash + Eq + Clone> CudaGraphs<S, K> {
        /// Graphs for `device` when it is a CUDA GPU and `TOKENLENS_CUDA_GRAPHS` is not `0`.
        pub fn new(device: &Device) -> Option<Self> {
            let Device::Cuda(cuda) = device else {
                return None;
            };
            // A profiled run synchronises inside the passes, which a capture cannot.
            if std::env::var("TOKENLENS_CUDA_GRAPHS").is_ok_and(|v| v.trim() == "0")
                || crate::profile::enabled()
            {
                return None;
            }
            Some(CudaGraphs {
                device: cuda.clone(),
                inner: Mutex::new(Inner {
                    entries: HashMap::new(),
                    failed: HashSet::new(),
                    clock: 0,
                    stats: GraphStats::default(),
                }),
            })
        }

        pub fn stats(&self) -> GraphStats {
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stats
                .clone()
        }

        /// Both steps for the batch `ids`/`mask`, replayed when `key` was recorded before.
        pub fn run(
            &self,
            key: K,
            ids: &Tensor,
            mask: &Tensor,
            steps: &Steps<S>,
        ) -> Result<Computed> {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let inner = &mut *guard;
            inner.clock += 1;
            let now = inner.clock;
            if let Some(entry) = inner.entries.get_mut(&key) {
                entry.last_used = now;
                let replayed = {
                    let _shared = shared_device_work();
                    replay(entry, ids, mask, steps)
                };
                match replayed {
                    Ok(computed) => {
                        inner.stats.replayed += 1;
                        return Ok(computed);
                    }
                    Err(e) => {
                        // A graph that recorded and replayed fine once should not fail; if it
                        // does, drop it and answer eagerly rather than fail the explanation.
                        {
                            // Freeing device memory is device work too (see DEVICE_WORK).
                            let _shared = shared_device_work();
                            inner.entries.remove(&key);
                        }
                        let _ = self.device.cuda_stream().context().check_err();
                        note_failure(inner, key.clone(), &e);
                        return super::run_eager(ids, mask, steps);
                    }
                }
            }
            // A caller that holds the device itself would not get it exclusively for recording.
            if inner.failed.contains(&key) || holds_device_work() {
                return super::run_eager(ids, mask, steps);
            }
            // The eager run fills candle's parameter cache that the capture needs.
            let _cache = self.device.enable_cuda_graph_htod_cache();
            let (computed, seed) = {
                let _shared = shared_device_work();
                eager(ids, mask, steps)?
            };
            let recorded = {
                let _exclusive = exclusive_device_work();
                self.record(ids, mask, &seed, steps, now, &computed)
            };
            match recorded {
                Ok(entry) => {
                    let _shared = shared_device_work();
                    if inner.entries.len() >= GRAPHS_KEPT
                        && let Some(oldest) = inner
                            .entries
                            .iter()
                            .min_by_key(|(_, e)| e.last_used)
                            .map(|(k, _)| k.clone())
                    {
                        inner.entries.remove(&oldest);
                    }
                    inner.entries.insert(key, entry);
                    inner.stats.captured += 1;
                }
                Err(e) => note_failure(inner, key, &e),
            }
            Ok(computed)
        }

        fn record(
            &self,
            ids: &Tensor,
            mask: &Tensor,
            seed: &Tensor,
            steps: &Steps<S>,
            now: u64,
            expected: &Computed,
        ) -> Result<Entry<S>> {
            let stream = self.device.cuda_stream();
            let ids_buffer = ids.copy()?;
            let mask_buffer = mask.copy()?;
            let seed_buffer = seed.copy()?;
            let (first, state) = capture(&stream, || (steps.first)(&ids_buffer, &mask_buffer))?;
            // Run it at once: its outputs then hold memory, so they may be freed or read.
            first.0.launch().map_err(|e| driver("launch", e))?;
            let (second, scores) = capture(&stream, || (steps.second)(&state, &seed_buffer))?;
            second.0.launch().map_err(|e| driver("launch", e))?;
            let mut entry = Entry {
                scores,
                state,
                first,
                second,
                ids: ids_buffer,
                mask: mask_buffer,
                seed: seed_buffer,
                last_used: now,
            };
            let replayed = replay(&mut entry, ids, mask, steps)?;
            if !agree(expected, &replayed) {
                return Err(Error::Device(
                    "CUDA graph replay differs from the eager run; graphs are off for this shape"
                        .into(),
                ));
            }
            Ok(entry)
        }
    }

    impl<S, K> Drop for CudaGraphs<S, K> {
        fn drop(&mut self) {
            let _shared = shared_device_work();
            let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
            inner.entries.clear();
        }
    }

    fn note_failure<S, K: std::hash::Hash + Eq>(inner: &mut Inner<S, K>, key: K, error: &Error) {
        inner.failed.insert(key);
        inner.stats.failed += 1;
        inner.stats.last_error = Some(
            error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    fn replay<S>(
        entry: &mut Entry<S>,
        ids: &Tensor,
        mask: &Tensor,
        steps: &Steps<S>,
    ) -> Result<Computed> {
        entry.ids.slice_set(ids, 0, 0)?;
        entry.mask.slice_set(mask, 0, 0)?;
        entry.first.0.launch().map_err(|e| driver("launch", e))?;
        let (logits, seed) = logits_and_seed(&entry.state, steps)?;
        entry.seed.slice_set(&seed, 0, 0)?;
        entry.second.0.launch().map_err(|e| driver("launch", e))?;
        Ok(Computed {
            logits,
            scores: read_scores(&entry.scores)?,
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use std::marker::PhantomData;

    use candle_core::{Device, Tensor};

    use super::{Computed, GraphStats, Steps};
    use crate::error::Result;

    /// Without the `cuda` feature there is nothing to record: [`CudaGraphs::new`] is `None`.
    pub struct CudaGraphs<S, K>(PhantomData<(S, K)>);

    impl<S, K> CudaGraphs<S, K> {
        pub fn new(_device: &Device) -> Option<Self> {
            None
        }

        pub fn stats(&self) -> GraphStats {
            GraphStats::default()
        }

        pub fn run(
            &self,
            _key: K,
            ids: &Tensor,
            mask: &Tensor,
            steps: &Steps<S>,
        ) -> Result<Computed> {
            super::run_eager(ids, mask, steps)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_work_is_reentrant_per_thread_and_exclusive_across_threads() {
        let exclusive = exclusive_device_work();
        // The recording thread runs the engine, which takes shared access: it must pass.
        let nested = shared_device_work();
        drop(nested);
        let (sender, receiver) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let _shared = shared_device_work();
            sender.send(()).unwrap();
        });
        let waited = receiver.recv_timeout(std::time::Duration::from_millis(200));
        assert!(
            waited.is_err(),
            "another thread got in during exclusive access"
        );
        drop(exclusive);
        receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("shared access after the exclusive holder left");
        other.join().unwrap();
        HELD_HERE.with(|held| assert_eq!(held.get(), 0));
    }

    fn computed(logits: Vec<f64>, scores: Vec<f64>) -> Computed {
        Computed {
            logits: vec![logits],
            scores: vec![vec![scores]],
        }
    }

    #[test]
    fn agreement_tolerates_rounding_and_nan_but_not_other_data() {
        let a = computed(vec![1.0, -2.0], vec![0.5, f64::NAN, 0.25]);
        let rounded = computed(vec![1.0 + 1e-9, -2.0], vec![0.5, f64::NAN, 0.25 + 1e-8]);
        assert!(agree(&a, &rounded));
        let other = computed(vec![1.0, -2.0], vec![0.5, f64::NAN, 0.35]);
        assert!(!agree(&a, &other));
        let shorter = computed(vec![1.0, -2.0], vec![0.5, f64::NAN]);
        assert!(!agree(&a, &shorter));
        let nan_vs_number = computed(vec![1.0, -2.0], vec![0.5, 0.0, 0.25]);
        assert!(!agree(&a, &nan_vs_number));
    }
}
