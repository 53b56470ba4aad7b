//! Policy plugins: placement heuristics and cost models as WebAssembly
//! components of the `policy` world (`wit/policy/policy.wit`).
//!
//! A [`PolicyRuntime`] compiles a plugin once (through the same on-disk
//! [`ArtifactCache`] as agents) into a [`PolicyComponent`]. From it come
//! [`PolicyInstance`]s — one store each, calls checked one by one — and the
//! two adapters the decision engine plugs in: [`WasmHeuristic`] and
//! [`WasmCostModel`], which implement `edgehost-placement`'s `Heuristic` and
//! `CostModel` traits. [`PolicySlot`] holds the policy a host decides with
//! and swaps it atomically; [`check`] is the conformance run behind
//! `edgehost policy check`.
//!
//! Every call runs under a CPU deadline (epoch interruption) and a memory
//! cap, in a store whose WASI context grants nothing and whose clocks and
//! randomness are frozen, so a plugin cannot tell two calls apart. Every
//! answer is checked: the number of values, that each is finite, and that
//! scores, objectives and plan costs are not negative. A trap, a broken
//! limit or a bad answer is an [`Error::Plugin`] naming the plugin, the call
//! and the [`PluginFault`]; through the adapters it reaches the engine as a
//! plugin failure, and the engine's `Policy` decides that call with its
//! native implementation and records the fallback.

pub mod check;
mod convert;
mod slot;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use edgehost_placement::cost::PlanReport;
use edgehost_placement::cost_model::CostModel;
use edgehost_placement::heuristic::{Heuristic, HeuristicMatrix};
use edgehost_placement::{Instance, MigrationContext, Plan, Policy};
use wasmtime::Store;
use wasmtime_wasi::WasiCtx;

use crate::inspect::{CONTRACT_VERSION, POLICY_COST_EXPORT, POLICY_HEURISTIC_EXPORT};
use crate::sandbox::{Bounds, Fault, Sandbox, SandboxData, Sandboxed};
use crate::{CacheOutcome, ComponentInfo, Digest, Error, Kind, Result};

pub use slot::PolicySlot;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/policy",
        world: "policy",
    });
}

use bindings::edgehost::policy::types as wit;

/// What bounds one policy call.
#[derive(Debug, Clone)]
pub struct PolicyLimits {
    /// Linear memory a plugin instance may grow to, MiB. A 1,000 x 100
    /// decision needs a few MiB; the cap stops a memory bomb long before it
    /// hurts the host.
    pub memory_mib: u32,
    /// How long one call may run before it is interrupted. Decisions wait
    /// on policy calls, so this is also the most a looping plugin can delay
    /// one decision before the native policy takes over.
    pub call_timeout: Duration,
    /// Native stack available to plugin code, bytes. Deeper recursion traps.
    pub max_stack_bytes: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            memory_mib: 256,
            call_timeout: Duration::from_secs(1),
            max_stack_bytes: 512 << 10,
        }
    }
}

/// Why a policy call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginFault {
    /// The sandbox stopped the call (deadline, memory cap, stack, trap),
    /// or an earlier such stop left the instance unusable.
    Sandbox(Fault),
    /// The plugin answered with a `policy-error`.
    Refused(String),
    /// The answer has the wrong number of values.
    WrongLength {
        /// What was counted.
        what: &'static str,
        /// How many the call needs.
        expected: usize,
        /// How many came back.
        got: usize,
    },
    /// A value is NaN or infinite.
    NotFinite {
        /// Which value.
        what: String,
        /// The value.
        value: f64,
    },
    /// A value is negative where the contract says it may not be.
    Negative {
        /// Which value.
        what: String,
        /// The value.
        value: f64,
    },
    /// The plugin's component could not be instantiated.
    Instantiate(String),
}

impl std::fmt::Display for PluginFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginFault::Sandbox(fault) => fault.fmt(f),
            PluginFault::Refused(m) => write!(f, "refused the call: {m}"),
            PluginFault::WrongLength {
                what,
                expected,
                got,
            } => write!(f, "returned {got} {what}, expected {expected}"),
            PluginFault::NotFinite { what, value } => {
                write!(f, "returned {value} for {what}, not a finite number")
            }
            PluginFault::Negative { what, value } => {
                write!(f, "returned {value} for {what}, which may not be negative")
            }
            PluginFault::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
        }
    }
}

impl From<Fault> for PluginFault {
    fn from(fault: Fault) -> Self {
        PluginFault::Sandbox(fault)
    }
}

impl PluginFault {
    /// Whether the fault leaves the instance's memory in an unknown state
    /// (a trap or a broken limit), so the instance must not be used again.
    fn poisons(&self) -> bool {
        matches!(self, PluginFault::Sandbox(fault) if !matches!(fault, Fault::Poisoned(_)))
    }
}

/// Builds a [`PolicyRuntime`].
#[derive(Debug, Clone)]
pub struct PolicyRuntimeBuilder {
    cache_dir: std::path::PathBuf,
    limits: PolicyLimits,
}

impl PolicyRuntimeBuilder {
    /// A builder that caches compiled plugins in `cache_dir`.
    pub fn new(cache_dir: impl Into<std::path::PathBuf>) -> Self {
        PolicyRuntimeBuilder {
            cache_dir: cache_dir.into(),
            limits: PolicyLimits::default(),
        }
    }

    /// Sets the limits every call runs under.
    pub fn limits(mut self, limits: PolicyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Creates the engine, the linker, the cache and the epoch ticker.
    pub fn build(self) -> Result<PolicyRuntime> {
        // The policy world imports nothing but WASI's cli and io, which
        // Rust's standard library always brings and the sandbox links.
        let sandbox = Sandbox::new(&self.cache_dir, self.limits.max_stack_bytes, |_| Ok(()))?;
        Ok(PolicyRuntime {
            sandbox: Arc::new(sandbox),
            limits: self.limits,
        })
    }
}

/// Loads policy plugins.
pub struct PolicyRuntime {
    /// Shared with every component it loads, which start stores from it.
    sandbox: Arc<Sandbox<PolicyHost>>,
    limits: PolicyLimits,
}

impl PolicyRuntime {
    /// The limits every call runs under.
    pub fn limits(&self) -> &PolicyLimits {
        &self.limits
    }

    /// Loads the plugin in the file at `path`, named after the file (its
    /// stem) in reports.
    pub fn load_file(&self, path: &Path) -> Result<PolicyComponent> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        self.load(&bytes, &name)
    }

    /// Checks that `bytes` is a policy component of this host's contract
    /// version, compiles it (or loads its cached artifact) and checks its
    /// imports and exports. `name` names the plugin in every report.
    pub fn load(&self, bytes: &[u8], name: &str) -> Result<PolicyComponent> {
        let info = ComponentInfo::scan(bytes)?;
        info.expect_policy()?;
        let loaded = self.sandbox.load(bytes, &info, |e| {
            Error::NotPolicy(format!(
                "policy {name:?} imports what a policy may not: {e:#}"
            ))
        })?;
        let pre = bindings::PolicyPre::new(loaded.pre).map_err(|e| {
            Error::NotPolicy(format!(
                "policy {name:?} has exports that do not match: {e:#}"
            ))
        })?;
        Ok(PolicyComponent {
            inner: Arc::new(ComponentInner {
                name: name.to_owned(),
                info,
                pre,
                sandbox: self.sandbox.clone(),
                limits: self.limits.clone(),
                cache: loaded.cache,
                load_time: loaded.load_time,
            }),
        })
    }
}

impl ComponentInfo {
    /// Fails unless this component targets the `policy` world at the version
    /// this host implements and exports both its interfaces.
    pub fn expect_policy(&self) -> Result<()> {
        match (self.kind, self.version.as_deref()) {
            (Kind::Policy, Some(CONTRACT_VERSION)) => {}
            (Kind::Policy, v) => {
                return Err(Error::NotPolicy(format!(
                    "it targets edgehost:policy/policy@{}, this host serves @{CONTRACT_VERSION}",
                    v.unwrap_or("?")
                )));
            }
            (Kind::Agent, _) => {
                return Err(Error::NotPolicy(
                    "it is an agent (world edgehost:agent/agent)".to_owned(),
                ));
            }
            (Kind::Neither, _) => {
                return Err(Error::NotPolicy(format!(
                    "it does not export {POLICY_HEURISTIC_EXPORT}@{CONTRACT_VERSION} (exports: {})",
                    if self.exports.is_empty() {
                        "none".to_owned()
                    } else {
                        self.exports.join(", ")
                    }
                )));
            }
        }
        for wanted in [POLICY_HEURISTIC_EXPORT, POLICY_COST_EXPORT] {
            let full = format!("{wanted}@{CONTRACT_VERSION}");
            if !self.exports.contains(&full) {
                return Err(Error::NotPolicy(format!(
                    "a policy must export both {POLICY_HEURISTIC_EXPORT} and {POLICY_COST_EXPORT} \
                     at @{CONTRACT_VERSION}; {full} is missing"
                )));
            }
        }
        Ok(())
    }
}

struct ComponentInner {
    name: String,
    info: ComponentInfo,
    pre: bindings::PolicyPre<SandboxData<PolicyHost>>,
    /// Where its stores come from, alive even if the runtime that loaded
    /// it is gone.
    sandbox: Arc<Sandbox<PolicyHost>>,
    limits: PolicyLimits,
    cache: CacheOutcome,
    load_time: Duration,
}

/// A compiled policy plugin, cheap to clone and to instantiate.
#[derive(Clone)]
pub struct PolicyComponent {
    inner: Arc<ComponentInner>,
}

impl std::fmt::Debug for PolicyComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyComponent")
            .field("name", &self.inner.name)
            .field("digest", &self.inner.info.digest)
            .finish()
    }
}

impl PolicyComponent {
    /// The name reports give it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The component's digest.
    pub fn digest(&self) -> Digest {
        self.inner.info.digest
    }

    /// What `inspect` knows about it.
    pub fn info(&self) -> &ComponentInfo {
        &self.inner.info
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &PolicyLimits {
        &self.inner.limits
    }

    /// Whether loading it hit the artifact cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// How long compiling or loading the artifact took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// A fresh instance in a store of its own.
    pub fn instantiate(&self) -> Result<PolicyInstance> {
        PolicyInstance::start(self)
    }

    /// The plugin's heuristic, for the decision engine.
    pub fn heuristic(&self) -> WasmHeuristic {
        WasmHeuristic {
            pool: Pool::new(self.clone()),
        }
    }

    /// The plugin's cost model, for the decision engine.
    pub fn cost_model(&self) -> WasmCostModel {
        WasmCostModel {
            pool: Pool::new(self.clone()),
        }
    }
}

/// A policy for the decision engine: the heuristic of `heuristic` and the
/// cost model of `cost_model`, each the native one when `None`.
pub fn plugin_policy(
    heuristic: Option<&PolicyComponent>,
    cost_model: Option<&PolicyComponent>,
) -> Policy {
    let native = Policy::native();
    match (heuristic, cost_model) {
        (None, None) => native,
        (h, c) => Policy::new(
            match h {
                Some(h) => Box::new(h.heuristic()),
                None => Box::new(edgehost_placement::NativeHeuristic::default()),
            },
            match c {
                Some(c) => Box::new(c.cost_model()),
                None => Box::new(edgehost_placement::NativeCostModel),
            },
        ),
    }
}

/// A clock that never moves: plugins get no time source.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// What a plugin's store holds beside the sandbox: nothing, since the
/// policy world imports nothing of the host beyond WASI.
pub(crate) struct PolicyHost;

/// A WASI context that grants nothing (no files, sockets, environment,
/// arguments or stdio), with frozen clocks and constant "randomness", so a
/// plugin cannot tell two calls apart.
fn frozen_wasi() -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    wasi.wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![0]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0]))
        .insecure_random_seed(0);
    wasi.build()
}

/// One live plugin instance: its own store, memory and limits. Calls check
/// every answer; a trap or broken limit poisons the instance, a bad answer
/// or a `policy-error` does not.
pub struct PolicyInstance {
    sandboxed: Sandboxed<PolicyHost>,
    bindings: bindings::Policy,
    name: String,
}

impl PolicyInstance {
    fn start(component: &PolicyComponent) -> Result<Self> {
        let inner = &component.inner;
        let mut sandboxed = inner.sandbox.store(
            PolicyHost,
            frozen_wasi(),
            Bounds::new(inner.limits.memory_mib, inner.limits.call_timeout),
        );
        let bindings = sandboxed
            .call("instantiate", |s| inner.pre.instantiate(s))
            .map_err(|fault| Error::Plugin {
                plugin: inner.name.clone(),
                call: "instantiate",
                fault: match fault {
                    Fault::Trap(m) => PluginFault::Instantiate(m),
                    other => other.into(),
                },
            })?;
        Ok(PolicyInstance {
            sandboxed,
            bindings,
            name: inner.name.clone(),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reason this instance was poisoned, if it was.
    pub fn poisoned(&self) -> Option<&str> {
        self.sandboxed.poisoned()
    }

    /// Sets how long each call may run before it is interrupted.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.sandboxed.set_timeout(timeout);
    }

    /// The heuristic's scores, row-major, `agents x servers` of them, each
    /// finite and not negative.
    pub fn score(&mut self, instance: &Instance) -> Result<Vec<f64>> {
        let input = convert::instance(instance);
        let values = self.call("score", |b, s| {
            b.edgehost_policy_heuristic().call_score(s, &input)
        })?;
        let expected = instance.agents.len() * instance.servers.len();
        self.checked("score", || {
            check_values(&values, expected, "scores", "score", true)
        })?;
        Ok(values)
    }

    /// The objective of each plan, one finite, non-negative value per plan.
    pub fn objectives(&mut self, instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>> {
        let input = convert::instance(instance);
        let plans_in: Vec<wit::Plan> = plans.iter().map(convert::plan).collect();
        let values = self.call("objectives", |b, s| {
            b.edgehost_policy_cost_model()
                .call_objectives(s, &input, &plans_in)
        })?;
        self.checked("objectives", || {
            check_values(&values, plans.len(), "objectives", "objective", true)
        })?;
        Ok(values)
    }

    /// The latency and cost breakdown of one plan; every number finite and
    /// not negative, one entry per task.
    pub fn plan_cost(&mut self, instance: &Instance, plan: &Plan) -> Result<PlanReport> {
        let input = convert::instance(instance);
        let plan_in = convert::plan(plan);
        let report = self.call("plan-cost", |b, s| {
            b.edgehost_policy_cost_model()
                .call_plan_cost(s, &input, &plan_in)
        })?;
        self.checked("plan-cost", || {
            convert::check_report(&report, instance.tasks.len())
        })?;
        Ok(convert::report(report))
    }

    /// The migration fitness of each candidate deployment, one finite value
    /// per candidate.
    pub fn migration_fitness(
        &mut self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> Result<Vec<f64>> {
        let input = convert::instance(instance);
        let before_in = convert::plan(before);
        let context_in = convert::context(context);
        let after_in: Vec<wit::Plan> = after.iter().map(convert::plan).collect();
        let values = self.call("migration-fitness", |b, s| {
            b.edgehost_policy_cost_model().call_migration_fitness(
                s,
                &input,
                &before_in,
                &context_in,
                &after_in,
            )
        })?;
        self.checked("migration-fitness", || {
            check_values(&values, after.len(), "fitness values", "fitness", false)
        })?;
        Ok(values)
    }

    fn checked(
        &self,
        call: &'static str,
        check: impl FnOnce() -> std::result::Result<(), PluginFault>,
    ) -> Result<()> {
        check().map_err(|fault| Error::Plugin {
            plugin: self.name.clone(),
            call,
            fault,
        })
    }

    /// Runs one export in the sandbox, turning traps, broken limits and
    /// `policy-error`s into precise errors (the sandbox poisons the instance
    /// on traps and broken limits).
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &bindings::Policy,
            &mut Store<SandboxData<PolicyHost>>,
        ) -> wasmtime::Result<std::result::Result<R, wit::PolicyError>>,
    ) -> Result<R> {
        let fail = |fault| Error::Plugin {
            plugin: self.name.clone(),
            call,
            fault,
        };
        let bindings = &self.bindings;
        match self.sandboxed.call(call, |s| f(bindings, s)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(fail(PluginFault::Refused(convert::refusal(e)))),
            Err(fault) => Err(fail(fault.into())),
        }
    }
}

/// Checks a list of numbers: its length, that each is finite and, when
/// `non_negative`, not below zero.
fn check_values(
    values: &[f64],
    expected: usize,
    plural: &'static str,
    singular: &str,
    non_negative: bool,
) -> std::result::Result<(), PluginFault> {
    if values.len() != expected {
        return Err(PluginFault::WrongLength {
            what: plural,
            expected,
            got: values.len(),
        });
    }
    for (i, &value) in values.iter().enumerate() {
        if !value.is_finite() {
            return Err(PluginFault::NotFinite {
                what: format!("{singular} {i}"),
                value,
            });
        }
        if non_negative && value < 0.0 {
            return Err(PluginFault::Negative {
                what: format!("{singular} {i}"),
                value,
            });
        }
    }
    Ok(())
}

/// Idle instances of one component, so concurrent decisions each get a
/// store of their own and sequential ones reuse a warm store. A poisoned
/// instance is dropped; the next call starts a fresh one.
struct Pool {
    component: PolicyComponent,
    idle: Mutex<Vec<PolicyInstance>>,
}

/// Idle instances kept per pool; more concurrent callers than this get
/// fresh instances that are dropped after use.
const MAX_IDLE: usize = 4;

impl Pool {
    fn new(component: PolicyComponent) -> Self {
        Pool {
            component,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut PolicyInstance) -> Result<R>) -> Result<R> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut instance = match taken {
            Some(i) => i,
            None => self.component.instantiate()?,
        };
        let result = f(&mut instance);
        if instance.poisoned().is_none() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(instance);
            }
        }
        result
    }

    /// Runs `f` and turns a failure into the engine's plugin error, logging
    /// it: the engine falls back to its native policy for this call.
    fn engine_call<R>(
        &self,
        f: impl FnOnce(&mut PolicyInstance) -> Result<R>,
    ) -> edgehost_placement::Result<R> {
        self.with(f).map_err(|e| {
            tracing::warn!(
                plugin = self.component.name(),
                "{e}; falling back to the native policy"
            );
            edgehost_placement::Error::Plugin(e.to_string())
        })
    }
}

/// A plugin's heuristic as the decision engine's [`Heuristic`].
pub struct WasmHeuristic {
    pool: Pool,
}

impl Heuristic for WasmHeuristic {
    fn name(&self) -> &str {
        self.pool.component.name()
    }

    fn matrix(&self, instance: &Instance) -> edgehost_placement::Result<HeuristicMatrix> {
        let values = self.pool.engine_call(|i| i.score(instance))?;
        HeuristicMatrix::new(instance.agents.len(), instance.servers.len(), values)
    }
}

/// A plugin's cost model as the decision engine's [`CostModel`].
pub struct WasmCostModel {
    pool: Pool,
}

impl CostModel for WasmCostModel {
    fn name(&self) -> &str {
        self.pool.component.name()
    }

    fn objectives(
        &self,
        instance: &Instance,
        plans: &[Plan],
    ) -> edgehost_placement::Result<Vec<f64>> {
        self.pool.engine_call(|i| i.objectives(instance, plans))
    }

    fn report(&self, instance: &Instance, plan: &Plan) -> edgehost_placement::Result<PlanReport> {
        self.pool.engine_call(|i| i.plan_cost(instance, plan))
    }

    fn migration_gains(
        &self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> edgehost_placement::Result<Vec<f64>> {
        self.pool
            .engine_call(|i| i.migration_fitness(instance, before, context, after))
    }
}
