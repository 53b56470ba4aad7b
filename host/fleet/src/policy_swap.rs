//! Swapping a host's placement policy (`SetPolicy`).
//!
//! A swap loads the plugins and starts an instance of each under this
//! host's own limits before anything changes, so a plugin this host cannot
//! run is refused with the reason and the old policy stays. The answer
//! names the plugins replaced, which a fleet-wide swap (`edgehost policy
//! set`) sends back to every host that took the new ones when another host
//! refused them.

use std::sync::Arc;

use edgehost_proto::PolicyPlugins;
use edgehost_runtime::{Digest, PolicyComponent, plugin_policy};

use crate::host::Shared;
use crate::protocol::Response;
use crate::sync::lock;
use crate::{Error, Result};

/// What the active placement policy is made of.
#[derive(Debug, Clone)]
pub(crate) struct ActivePolicy {
    /// Its description, as reports show it.
    pub(crate) name: String,
    /// Its plugins.
    pub(crate) plugins: PolicyPlugins,
    /// The plugins it replaced. Garbage collection keeps them too, so a
    /// fleet-wide swap another host refused can still roll back here.
    pub(crate) previous: PolicyPlugins,
}

impl Default for ActivePolicy {
    fn default() -> Self {
        ActivePolicy {
            name: "built-in".to_owned(),
            plugins: PolicyPlugins::default(),
            previous: PolicyPlugins::default(),
        }
    }
}

impl ActivePolicy {
    /// The components of the active plugins and of those they replaced.
    pub(crate) fn digests(&self) -> Vec<Digest> {
        self.plugins
            .digests()
            .chain(self.previous.digests())
            .collect()
    }
}

impl Shared {
    /// Loads stored policy plugins, checks that this host can run them and
    /// makes them the active policy.
    pub(crate) async fn set_policy(self: &Arc<Self>, plugins: PolicyPlugins) -> Result<Response> {
        for digest in plugins.digests() {
            if !self.store.has(&digest) {
                return Err(Error::NotFound(format!(
                    "policy component {digest} is not stored here; upload it first"
                )));
            }
        }
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.swap_policy(plugins))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn swap_policy(&self, plugins: PolicyPlugins) -> Result<Response> {
        let h = self.load_policy(plugins.heuristic)?;
        let c = self.load_policy(plugins.cost_model)?;
        let describe = |what: &str, p: &Option<PolicyComponent>| match p {
            Some(p) => format!("{what} {} ({})", p.name(), p.digest()),
            None => format!("{what} built-in"),
        };
        let name = if h.is_none() && c.is_none() {
            "built-in".to_owned()
        } else {
            format!(
                "{}, {}",
                describe("heuristic", &h),
                describe("cost model", &c)
            )
        };
        // One swap at a time: the slot's generation and the description
        // change together.
        let mut active = lock(&self.active_policy);
        let (generation, _old) = self.policy.swap(plugin_policy(h.as_ref(), c.as_ref()));
        let previous = active.plugins;
        *active = ActivePolicy {
            name: name.clone(),
            plugins,
            previous,
        };
        drop(active);
        tracing::info!(policy = %name, generation, "placement policy swapped");
        Ok(Response::PolicySet {
            policy: name,
            generation,
            previous,
        })
    }

    /// Loads one stored plugin and starts an instance of it, so a plugin
    /// this host cannot run (its memory over `[limits] policy_memory_mib`)
    /// fails here, before the swap, rather than at the next decision.
    fn load_policy(&self, digest: Option<Digest>) -> Result<Option<PolicyComponent>> {
        let Some(digest) = digest else {
            return Ok(None);
        };
        let bytes = self.store.read(&digest)?;
        let plugin = self
            .policy_runtime
            .load(&bytes, &format!("plugin {}", &digest.hex()[..12]))?;
        plugin.instantiate().map_err(|e| {
            Error::BadRequest(format!(
                "policy plugin {digest} cannot run on this host: {e}"
            ))
        })?;
        Ok(Some(plugin))
    }
}
