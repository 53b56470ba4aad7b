//! The runtime: the agent world's sandbox (one wasmtime engine, its linker,
//! the artifact cache and the epoch ticker), shared by every agent on the
//! host.

use std::path::{Path, PathBuf};

use wasmtime::component::HasSelf;

use crate::agent::{AgentComponent, AgentHost, bindings};
use crate::cache::ArtifactCache;
use crate::limits::Limits;
use crate::sandbox::{Sandbox, SandboxData};
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

    /// Creates the engine, the linker, the cache and the epoch ticker.
    pub fn build(self) -> Result<Runtime> {
        let sandbox = Sandbox::new(&self.cache_dir, self.limits.max_stack_bytes, |linker| {
            bindings::Agent::add_to_linker::<_, HasSelf<AgentHost>>(linker, SandboxData::host_mut)
        })?;
        Ok(Runtime {
            sandbox,
            limits: self.limits,
        })
    }
}

/// Loads agent components and starts instances of them.
pub struct Runtime {
    sandbox: Sandbox<AgentHost>,
    limits: Limits,
}

impl Runtime {
    /// The host-wide limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        self.sandbox.cache()
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
        self.load_checked(bytes, false)
    }

    /// [`Runtime::load`] for running the agent here: an agent that declares
    /// another architecture is refused before anything is compiled.
    pub fn load_native(&self, bytes: &[u8]) -> Result<AgentComponent> {
        self.load_checked(bytes, true)
    }

    fn load_checked(&self, bytes: &[u8], native: bool) -> Result<AgentComponent> {
        let info = ComponentInfo::scan(bytes)?;
        info.expect_agent()?;
        if native {
            info.expect_arch()?;
        }
        let loaded = self.sandbox.load(bytes, &info, |e| {
            Error::WrongWorld(format!("its imports cannot be satisfied: {e:#}"))
        })?;
        let pre = bindings::AgentPre::new(loaded.pre)
            .map_err(|e| Error::WrongWorld(format!("its exports do not match: {e:#}")))?;
        Ok(AgentComponent {
            info,
            pre,
            cache: loaded.cache,
            load_time: loaded.load_time,
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
        AgentInstance::start(component, name, &self.limits, services, &self.sandbox)
    }
}
