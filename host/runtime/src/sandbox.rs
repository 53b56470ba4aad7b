//! The one sandbox every guest of this crate runs in, agent or policy plugin.
//!
//! Agents and policy plugins are untrusted code under the same protections:
//! an engine with epoch interruption and a bounded stack, a WASI context that
//! grants nothing, one memory budget shared by every linear memory and table
//! of the store, a deadline on every call and a trap that poisons the store.
//! Kept as two copies, those protections drift apart (a fix lands in one world
//! and not the other), so both worlds instantiate this generic sandbox with
//! their own host state `T`, the way spin's `Engine<T>` is shared by its
//! triggers:
//!
//! - [`Sandbox<T>`]: the engine, the linker (WASI p2 plus whatever the world
//!   adds), the artifact cache and the epoch ticker of one world.
//! - [`SandboxData<T>`]: the data of one store: the WASI context, its resource
//!   table, the [`MemoryCap`] and the world's host state.
//! - [`Sandboxed<T>`]: one live store: every call into it runs under its
//!   deadline, and a failed call is classified into a [`Fault`] and poisons it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::cache::ArtifactCache;
use crate::limits::{EpochTicker, MemoryCap, ticks_for};
use crate::{CacheOutcome, ComponentInfo, Error, Result};

/// What bounds one store: its memory budget and the deadline of each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Bytes all linear memories and tables of the store may reach together.
    pub(crate) memory_bytes: usize,
    /// How long one call may run before it is interrupted.
    pub(crate) call_timeout: Duration,
}

impl Bounds {
    /// A budget of `memory_mib` MiB and a deadline of `call_timeout`.
    pub(crate) fn new(memory_mib: u32, call_timeout: Duration) -> Self {
        Bounds {
            memory_bytes: mib_to_bytes(memory_mib),
            call_timeout,
        }
    }
}

/// `mib` MiB in bytes, saturating.
pub(crate) fn mib_to_bytes(mib: u32) -> usize {
    usize::try_from(mib)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20)
}

/// The engine, linker, cache and epoch ticker of one world.
pub(crate) struct Sandbox<T: 'static> {
    engine: Engine,
    linker: Linker<SandboxData<T>>,
    cache: ArtifactCache,
    /// Shared with every store: deadlines fire only while it runs.
    ticker: Arc<EpochTicker>,
}

/// A component compiled and pre-linked by a [`Sandbox`].
pub(crate) struct Loaded<T: 'static> {
    /// Ready to instantiate; the world wraps it in its typed bindings.
    pub(crate) pre: InstancePre<SandboxData<T>>,
    /// Whether the artifact came from the cache.
    pub(crate) cache: CacheOutcome,
    /// How long compiling or loading the artifact took.
    pub(crate) load_time: Duration,
}

impl<T: Send + 'static> Sandbox<T> {
    /// Creates the engine (epoch interruption for deadlines, a stack of
    /// `max_stack_bytes`), a linker with WASI p2 to which `link` adds the
    /// world's own imports, the artifact cache in `cache_dir` and the ticker.
    pub(crate) fn new(
        cache_dir: &Path,
        max_stack_bytes: usize,
        link: impl FnOnce(&mut Linker<SandboxData<T>>) -> wasmtime::Result<()>,
    ) -> Result<Self> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(max_stack_bytes)
            // Several memories are allowed: the cap is on their total, and
            // their number on what `MemoryCap::memories` says.
            .wasm_multi_memory(true)
            // Agent and policy exports are synchronous; component-model async
            // bookkeeping would only slow each call.
            .concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        // Rust's standard library on wasm32-wasip2 always imports WASI's cli
        // and io interfaces, so they are linked, against contexts that grant
        // nothing.
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        link(&mut linker).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let cache = ArtifactCache::open(cache_dir, &engine)?;
        let ticker =
            EpochTicker::start(engine.clone()).map_err(|e| Error::io("epoch thread", e))?;
        Ok(Sandbox {
            engine,
            linker,
            cache,
            ticker: Arc::new(ticker),
        })
    }

    /// The artifact cache.
    pub(crate) fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// Compiles the component `bytes` described by `info` (or loads its
    /// cached artifact) and pre-links it against this world's imports;
    /// `unlinkable` words the error when its imports cannot be satisfied.
    pub(crate) fn load(
        &self,
        bytes: &[u8],
        info: &ComponentInfo,
        unlinkable: impl FnOnce(wasmtime::Error) -> Error,
    ) -> Result<Loaded<T>> {
        let start = Instant::now();
        let (component, cache) = self
            .cache
            .load_or_compile(&self.engine, &info.digest, bytes)?;
        let load_time = start.elapsed();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(unlinkable)?;
        Ok(Loaded {
            pre,
            cache,
            load_time,
        })
    }

    /// A fresh store holding `host`, with the WASI context `wasi`, under
    /// `bounds`.
    pub(crate) fn store(&self, host: T, wasi: WasiCtx, bounds: Bounds) -> Sandboxed<T> {
        let data = SandboxData {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap::new(bounds.memory_bytes),
            host,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limiter);
        Sandboxed {
            store,
            timeout: bounds.call_timeout,
            poisoned: None,
            _ticker: self.ticker.clone(),
        }
    }
}

/// The data of one store: a WASI context, its resource table, the memory
/// cap of the whole store, and the world's host state.
pub(crate) struct SandboxData<T> {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    host: T,
}

impl<T> SandboxData<T> {
    /// The world's host state.
    pub(crate) fn host(&self) -> &T {
        &self.host
    }

    /// The world's host state, mutably (what the world's imports get).
    pub(crate) fn host_mut(&mut self) -> &mut T {
        &mut self.host
    }
}

impl<T: Send + 'static> WasiView for SandboxData<T> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why a call into a store failed. Every fault poisons the store: the
/// component model gives no guarantee about an instance's memory after a
/// trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call ran past its deadline and was interrupted.
    Deadline {
        /// The deadline, ms.
        timeout_ms: u64,
    },
    /// The guest tried to grow its memories and tables past the cap.
    MemoryLimit {
        /// The cap, MiB.
        cap_mib: usize,
        /// What the store would have held, MiB.
        requested_mib: usize,
    },
    /// The guest recursed past the stack limit.
    StackOverflow,
    /// Any other trap, or an error of wasmtime, on one line.
    Trap(String),
    /// An earlier call failed (the text names it and how); the store is
    /// unusable.
    Poisoned(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Deadline { timeout_ms } => {
                write!(f, "ran past its {timeout_ms} ms deadline and was stopped")
            }
            Fault::MemoryLimit {
                cap_mib,
                requested_mib,
            } => write!(
                f,
                "tried to grow its memory to {requested_mib} MiB, above its {cap_mib} MiB cap"
            ),
            Fault::StackOverflow => write!(f, "exhausted its stack"),
            Fault::Trap(m) => write!(f, "trapped: {m}"),
            Fault::Poisoned(m) => write!(f, "is unusable after an earlier failure ({m})"),
        }
    }
}

/// One live store of a world: its deadline, its memory cap, its poison.
pub(crate) struct Sandboxed<T: 'static> {
    store: Store<SandboxData<T>>,
    timeout: Duration,
    /// Which call failed and how, once one has.
    poisoned: Option<String>,
    /// Deadlines fire only while the ticker runs: every store keeps it
    /// alive, even past the sandbox that created it.
    _ticker: Arc<EpochTicker>,
}

impl<T: 'static> Sandboxed<T> {
    /// The store's data.
    pub(crate) fn data(&self) -> &SandboxData<T> {
        self.store.data()
    }

    /// The store's data, mutably.
    pub(crate) fn data_mut(&mut self) -> &mut SandboxData<T> {
        self.store.data_mut()
    }

    /// Sets the bytes all memories and tables of the store may reach.
    pub(crate) fn set_memory_cap(&mut self, bytes: usize) {
        self.store.data_mut().limiter.cap_bytes = bytes;
    }

    /// Sets how long each call may run before it is interrupted.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Which call poisoned the store and how it failed, if one did.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Runs `f` (an instantiation or a call of the export `call`) under the
    /// deadline and the memory cap. A failure is classified, poisons the
    /// store and comes back as a [`Fault`]; a poisoned store runs nothing.
    pub(crate) fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&mut Store<SandboxData<T>>) -> wasmtime::Result<R>,
    ) -> std::result::Result<R, Fault> {
        if let Some(reason) = &self.poisoned {
            return Err(Fault::Poisoned(reason.clone()));
        }
        self.store.set_epoch_deadline(ticks_for(self.timeout));
        f(&mut self.store).map_err(|e| {
            let fault = self.classify(e);
            self.poisoned = Some(format!("{call} {fault}"));
            fault
        })
    }

    /// Names the reason a call into the store failed: a refusal of the
    /// memory cap first (its trap is only the messenger), then the trap.
    fn classify(&mut self, e: wasmtime::Error) -> Fault {
        let limiter = &mut self.store.data_mut().limiter;
        if let Some(requested) = limiter.refused.take() {
            return Fault::MemoryLimit {
                cap_mib: limiter.cap_bytes >> 20,
                requested_mib: requested.div_ceil(1 << 20),
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Deadline {
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            },
            Some(Trap::StackOverflow) => Fault::StackOverflow,
            Some(trap) => Fault::Trap(trap.to_string()),
            None => Fault::Trap(one_line(&format!("{e:#}"))),
        }
    }
}

/// Text from a guest or wasmtime, on one line and at most a few hundred
/// bytes, so a hostile guest cannot flood a report.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 400;
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module};

    use super::*;

    fn sandbox(dir: &Path) -> Sandbox<()> {
        Sandbox::new(dir, 512 << 10, |_| Ok(())).expect("sandbox")
    }

    fn module(sandbox: &Sandbox<()>, text: &str) -> Module {
        let bytes = wat::parse_str(text).expect("wat");
        Module::new(&sandbox.engine, bytes).expect("module")
    }

    fn store(sandbox: &Sandbox<()>, memory_mib: u32) -> Sandboxed<()> {
        sandbox.store(
            (),
            WasiCtx::builder().build(),
            Bounds::new(memory_mib, Duration::from_secs(5)),
        )
    }

    #[test]
    fn the_memories_of_a_store_share_one_cap_and_a_refusal_poisons_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = sandbox(dir.path());
        // Two memories of 1 MiB each fill a 2 MiB cap; a third, empty one
        // may not grow at all.
        let module = module(
            &sandbox,
            r#"(module (memory 16) (memory 16) (memory 0)
                 (func (export "grow") (param i32) (result i32)
                   (memory.grow 2 (local.get 0))))"#,
        );
        let mut sandboxed = store(&sandbox, 2);
        let instance = sandboxed
            .call("instantiate", |s| Instance::new(s, &module, &[]))
            .expect("2 MiB fits");
        let grow = sandboxed
            .call("lookup", |s| instance.get_typed_func::<i32, i32>(s, "grow"))
            .expect("grow");
        assert_eq!(sandboxed.call("grow", |s| grow.call(s, 0)), Ok(0));
        assert_eq!(
            sandboxed.call("grow", |s| grow.call(s, 1)),
            Err(Fault::MemoryLimit {
                cap_mib: 2,
                requested_mib: 3
            })
        );
        let reason = sandboxed.poisoned().expect("poisoned").to_owned();
        assert!(
            reason.starts_with("grow tried to grow its memory"),
            "{reason}"
        );
        assert_eq!(
            sandboxed.call("grow", |s| grow.call(s, 0)),
            Err(Fault::Poisoned(reason))
        );
    }

    #[test]
    fn a_store_holds_no_more_memories_than_the_limiter_allows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = sandbox(dir.path());
        // The count is per store, over all its instances: two instances of
        // 50 memories fit, a third does not.
        let module = module(&sandbox, &format!("(module {})", "(memory 0) ".repeat(50)));
        let mut sandboxed = store(&sandbox, 1);
        for _ in 0..2 {
            assert!(
                sandboxed
                    .call("instantiate", |s| Instance::new(s, &module, &[]))
                    .is_ok()
            );
        }
        match sandboxed.call("instantiate", |s| Instance::new(s, &module, &[])) {
            Err(Fault::Trap(m)) => assert!(m.contains("memory count too high"), "{m}"),
            other => panic!("expected the memory count refused, got {other:?}"),
        }
    }

    #[test]
    fn a_deadline_interrupts_and_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = sandbox(dir.path());
        let module = module(&sandbox, r#"(module (func (export "spin") (loop (br 0))))"#);
        let mut sandboxed = store(&sandbox, 1);
        sandboxed.set_timeout(Duration::from_millis(50));
        let instance = sandboxed
            .call("instantiate", |s| Instance::new(s, &module, &[]))
            .expect("instantiate");
        let spin = sandboxed
            .call("lookup", |s| instance.get_typed_func::<(), ()>(s, "spin"))
            .expect("spin");
        assert_eq!(
            sandboxed.call("spin", |s| spin.call(s, ())),
            Err(Fault::Deadline { timeout_ms: 50 })
        );
    }
}
