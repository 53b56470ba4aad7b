//! The runtime: one wasmtime engine, its linker, the artifact cache and the
//! epoch ticker, shared by every agent on the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::agent::{AgentComponent, AgentState, bindings};
use crate::cache::ArtifactCache;

use crate::limits::{EpochTicker, Limits};
use crate::{AgentInstance, ComponentInfo, Error, Result, Services};

/// Builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    cache_dir: PathBuf,
    limits: Limits,
}

impl RuntimeBuilder {
    /// A builder that caches compiled artifacts in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        RuntimeBuilder {
            cache_dir: cache_dir.into(),
            limits: Limits::default(),
        }
    }

    /// Sets the host-wide limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Creates the engine, the linker and the cache.
    pub fn build(self) -> Result<Runtime> {
        let engine = sandbox_engine(self.limits.max_stack_bytes)?;
        let mut linker = wasi_linker(&engine)?;
        bindings::Agent::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;

        let cache = ArtifactCache::open(&self.cache_dir, &engine)?;
        let ticker =
            EpochTicker::start(engine.clone()).map_err(|e| Error::io("epoch thread", e))?;
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits: self.limits,
            ticker: Arc::new(ticker),
        })
    }
}

/// The engine every sandbox of this crate runs on: epoch interruption for
/// deadlines, a bounded stack, and no component-model async bookkeeping
/// (agent and policy exports are synchronous; it would only slow each call).
pub(crate) fn sandbox_engine(max_stack_bytes: usize) -> Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(max_stack_bytes)
        .concurrency_support(false);
    Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))
}

/// A linker with WASI p2: Rust's standard library on wasm32-wasip2 always
/// imports its cli and io interfaces, so they are linked, against contexts
/// that grant nothing.
pub(crate) fn wasi_linker<T: wasmtime_wasi::WasiView + 'static>(
    engine: &Engine,
) -> Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| Error::Engine(format!("{e:#}")))?;
    Ok(linker)
}

/// Loads agent components and starts instances of them.
pub struct Runtime {
    engine: Engine,
    linker: Linker<AgentState>,
    cache: ArtifactCache,
    limits: Limits,
    /// Shared with every instance: deadlines fire only while it runs.
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// The host-wide limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// Loads the agent component in the file at `path`.
    pub fn load_file(&self, path: &Path) -> Result<AgentComponent> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.load(&bytes)
    }

    /// Checks that `bytes` is an agent component, then compiles it or loads
    /// its compiled artifact from the cache, and checks its imports and
    /// exports against the `agent` world.
    pub fn load(&self, bytes: &[u8]) -> Result<AgentComponent> {
        let info = ComponentInfo::scan(bytes)?;
        info.expect_agent()?;
        let start = Instant::now();
        let (component, cache) = self
            .cache
            .load_or_compile(&self.engine, &info.digest, bytes)?;
        let load_time = start.elapsed();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::WrongWorld(format!("its imports cannot be satisfied: {e:#}")))?;
        let pre = bindings::AgentPre::new(pre)
            .map_err(|e| Error::WrongWorld(format!("its exports do not match: {e:#}")))?;
        Ok(AgentComponent {
            info,
            pre,
            cache,
            load_time,
        })
    }

    /// Starts a fresh instance of `component` named `name`: instantiates it,
    /// asks it to `describe` itself and caps its memory at what it declared.
    /// The caller then calls `init` (and `import-state` to resume).
    pub fn instantiate(
        &self,
        component: &AgentComponent,
        name: &str,
        services: Services,
    ) -> Result<AgentInstance> {
        AgentInstance::start(
            component,
            name,
            &self.limits,
            services,
            &self.engine,
            self.ticker.clone(),
        )
    }
}
