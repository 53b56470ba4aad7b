//! What bounds an agent: memory (a hard cap from its declared demand), CPU
//! time (epoch deadlines), stack, and the sizes of what crosses the boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// Host-wide limits that every agent instance runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most memory any one agent may declare, in MiB. An agent declaring
    /// more is refused; an agent declaring less is capped at its declaration.
    pub max_memory_mib: u32,
    /// Native stack available to Wasm code, in bytes. Deeper recursion traps.
    pub max_stack_bytes: usize,
    /// How long one call into an agent may run before it is interrupted.
    pub call_timeout: Duration,
    /// Largest request body accepted for `handle`, in bytes.
    pub max_request_bytes: usize,
    /// Largest response body accepted from `handle`, in bytes.
    pub max_response_bytes: usize,
    /// Largest state blob accepted from `export-state` or for `import-state`.
    pub max_state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_mib: 512,
            max_stack_bytes: 1 << 20,
            call_timeout: Duration::from_secs(10),
            max_request_bytes: 16 << 20,
            max_response_bytes: 16 << 20,
            max_state_bytes: 256 << 20,
        }
    }
}

/// Per-store resource limiter: refuses growth past the cap and remembers
/// that it did, so the trap can be reported as what it is.
///
/// The cap is on the store's total: every linear memory and every table of
/// every core instance of the component together, so a guest cannot multiply
/// its declared memory by spreading it over many memories or tables. Each
/// table element is charged [`TABLE_ELEMENT_BYTES`], what it costs the host.
/// How many instances, memories and tables a store may create at all is
/// what wasmtime asks this limiter for ([`ResourceLimiter::instances`] and
/// the like) and enforces at instantiation.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    /// Bytes all the store's memories and tables together may reach.
    pub(crate) cap_bytes: usize,
    /// The total a refused growth asked for, if one was refused.
    pub(crate) refused: Option<usize>,
    /// Bytes of linear memory the store holds now.
    memory_bytes: usize,
    /// Bytes of table elements the store holds now.
    table_bytes: usize,
}

impl MemoryCap {
    /// A cap of `cap_bytes` on a store that holds nothing yet.
    pub(crate) fn new(cap_bytes: usize) -> Self {
        MemoryCap {
            cap_bytes,
            refused: None,
            memory_bytes: 0,
            table_bytes: 0,
        }
    }

    /// Bytes the store's memories and tables hold now.
    pub(crate) fn used_bytes(&self) -> usize {
        self.memory_bytes.saturating_add(self.table_bytes)
    }

    /// Admits a growth of one memory or table from `current` to `desired`
    /// bytes when the store's total stays within the cap, returning the new
    /// total of its kind (`held` is that kind's total now); otherwise
    /// records the refusal and returns the error that traps the guest.
    fn admit(&mut self, held: usize, current: usize, desired: usize) -> wasmtime::Result<usize> {
        let kind = held.saturating_sub(current).saturating_add(desired);
        let total = self.used_bytes().saturating_sub(held).saturating_add(kind);
        if total > self.cap_bytes {
            self.refused = Some(total);
            // Trapping (rather than failing the grow instruction) stops a
            // memory bomb at once with a precise reason instead of letting
            // the guest's allocator abort somewhere else.
            return Err(wasmtime::format_err!(
                "memory limit: growing to {total} bytes of memories and tables in all exceeds the cap of {} bytes",
                self.cap_bytes
            ));
        }
        Ok(kind)
    }
}

/// What one table element costs the host: a pointer.
pub(crate) const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// How many instances, memories and tables one store may create: generous
/// for real components, finite for hostile ones.
const MAX_INSTANCES: usize = 1_000;
const MAX_TABLES: usize = 1_000;
const MAX_MEMORIES: usize = 100;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory_bytes = self.admit(self.memory_bytes, current, desired)?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.table_bytes = self.admit(
            self.table_bytes,
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )?;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Advances the engine's epoch at a fixed period, so every store's deadline
/// (a number of ticks) turns into wall-clock time. Stops when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Period of one epoch tick: the resolution of call timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("edgehost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The number of epoch ticks that covers `timeout` (at least one more than
/// needed, so a deadline never fires early).
pub(crate) fn ticks_for(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    (timeout.as_micros().div_ceil(tick) as u64).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_refuses_and_remembers() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(matches!(cap.memory_growing(0, 1 << 19, None), Ok(true)));
        assert!(cap.refused.is_none());
        assert!(cap.memory_growing(1 << 19, 2 << 20, None).is_err());
        assert_eq!(cap.refused, Some(2 << 20));
        // The refused growth left the count as it was.
        assert_eq!(cap.used_bytes(), 1 << 19);
    }

    #[test]
    fn the_cap_counts_every_memory_and_table_of_the_store() {
        let mut cap = MemoryCap::new(1 << 20);
        // Four memories of 256 KiB fit; a fifth does not.
        for _ in 0..4 {
            assert!(matches!(cap.memory_growing(0, 256 << 10, None), Ok(true)));
        }
        assert!(cap.memory_growing(0, 256 << 10, None).is_err());
        assert_eq!(cap.refused.take(), Some(1_310_720));
        // Nor does growing one of them.
        assert!(cap.memory_growing(256 << 10, 512 << 10, None).is_err());
        assert!(cap.refused.take().is_some());
        // A table takes from the same budget: full memories leave it none.
        assert!(cap.table_growing(0, 1, None).is_err());
        assert_eq!(cap.refused.take(), Some((1 << 20) + TABLE_ELEMENT_BYTES));

        let mut cap = MemoryCap::new(1 << 20);
        let half = (1 << 19) / TABLE_ELEMENT_BYTES;
        assert!(matches!(cap.table_growing(0, half, None), Ok(true)));
        assert!(matches!(cap.table_growing(0, half, None), Ok(true)));
        assert_eq!(cap.used_bytes(), 1 << 20);
        assert!(cap.table_growing(half, half + 1, None).is_err());
        assert!(cap.memory_growing(0, 1, None).is_err());
    }

    #[test]
    fn ticks_cover_the_timeout() {
        assert!(ticks_for(Duration::from_millis(100)) * EPOCH_TICK.as_millis() as u64 >= 100);
        assert!(ticks_for(Duration::ZERO) >= 1);
    }
}
