//! What this host measures about itself and its links, kept current as
//! exponentially weighted fits, and how those figures become the cost
//! model's constants.
//!
//! Every operation the model prices is timed where it really happens:
//! exports after calls and in migrations, imports on transfers and
//! restarts, instantiation and `init` on deploys, prepares and restarts,
//! compiles and cache loads, LLM completions (per host, and per agent as
//! the time its calls waited for them), and the state a migration
//! sends to its target (pre-copies, transfers). Round-trip times are the transport's
//! own smoothed estimate of each connection. The figures come from the work
//! the host does anyway; only a link that nothing has measured for a while
//! (`probe_ms`) gets a probe of [`PROBE_BYTES`], so its pace is known
//! before the first migration needs it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgehost_placement::cost::CostParams;
use edgehost_proto::{
    ComponentModel, Digest, Estimate, HostModel, HostName, LinkModel, MigrationTimes,
};

use crate::sync::lock;

/// Weight of the newest sample once a fit has seen enough: about the last
/// ten samples count. Until then every sample counts equally, so the first
/// samples are not dragged towards zero.
const ALPHA: f64 = 0.1;

/// Below this relative spread of sizes a fit has no slope of its own: a
/// line through the origin and the mean is used instead, so a host that
/// only ever saw one size still scales its figure with size.
const MIN_SIZE_SPREAD: f64 = 0.05;

/// An exponentially weighted straight-line fit of durations against sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fit {
    samples: u64,
    mean_x: f64,
    mean_y: f64,
    var_x: f64,
    cov_xy: f64,
    var_y: f64,
}

impl Fit {
    /// Adds one sample: `ms` milliseconds for `size`. Non-finite or
    /// negative samples are ignored.
    pub fn add(&mut self, size: f64, ms: f64) {
        let plausible = (0.0..=edgehost_proto::MAX_FIGURE_SIZE).contains(&size)
            && (0.0..=edgehost_proto::MAX_FIGURE_MS).contains(&ms);
        if !plausible {
            return;
        }
        self.samples += 1;
        let a = (1.0 / self.samples as f64).max(ALPHA);
        let dx = size - self.mean_x;
        let dy = ms - self.mean_y;
        self.mean_x += a * dx;
        self.mean_y += a * dy;
        self.var_x = (1.0 - a) * (self.var_x + a * dx * dx);
        self.cov_xy = (1.0 - a) * (self.cov_xy + a * dx * dy);
        self.var_y = (1.0 - a) * (self.var_y + a * dy * dy);
    }

    /// The fit as it travels in reports; `None` before the first sample.
    pub fn estimate(&self) -> Option<Estimate> {
        if self.samples == 0 {
            return None;
        }
        let through_origin = if self.mean_x > 0.0 {
            self.mean_y / self.mean_x
        } else {
            0.0
        };
        let spread = self.var_x.sqrt();
        let slope = if spread > MIN_SIZE_SPREAD * self.mean_x && self.var_x > 0.0 {
            // The least-squares slope, kept where a line makes sense: not
            // negative, and not so steep that small sizes would take
            // negative time.
            (self.cov_xy / self.var_x).clamp(0.0, through_origin.max(0.0))
        } else {
            through_origin
        };
        let residual = self.var_y - 2.0 * slope * self.cov_xy + slope * slope * self.var_x;
        Some(Estimate {
            mean_size: self.mean_x,
            mean_ms: self.mean_y,
            ms_per_unit: slope,
            spread_ms: residual.max(0.0).sqrt(),
            samples: self.samples,
        })
    }
}

/// The figures this host keeps.
#[derive(Debug, Default)]
struct Figures {
    export: Fit,
    import: Fit,
    start: Fit,
    compile: Fit,
    cache_load: Fit,
    llm: Fit,
    sends: HashMap<HostName, Fit>,
    processing: HashMap<String, Fit>,
    /// By agent: its LLM time per call, against the request's bytes, for
    /// the agents that have called the LLM here.
    agent_llm: HashMap<String, Fit>,
    /// By agent: the LLM time of its call in progress, milliseconds.
    llm_pending: HashMap<String, f64>,
    /// By peer: when its link was last measured by a send, or probed, or
    /// first seen.
    link_checked: HashMap<HostName, Instant>,
    components: HashMap<Digest, ComponentFits>,
}

/// Export, import and start of one component's agents.
#[derive(Debug, Default)]
struct ComponentFits {
    export: Fit,
    import: Fit,
    start: Fit,
}

/// What this host measured, shared by everything that times an operation.
#[derive(Debug, Default)]
pub struct Calibration {
    figures: Mutex<Figures>,
}

/// Which of this host's own operations a sample times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `export-state`, sized by the state's bytes.
    Export,
    /// The `export-state` a migration makes once the agent is held, sized
    /// by the state's bytes. It comes right after the pre-copy's export,
    /// with the state's pages warm, and is faster than the exports after
    /// calls: the component's own export figure, which migrations are
    /// predicted from, is fed by these alone.
    HoldExport,
    /// `import-state`, sized by the state's bytes.
    Import,
    /// Instantiate and `init`, sized by the component's bytes.
    Start,
    /// A compile, sized by the component's bytes.
    Compile,
    /// A cached artifact's load, sized by the component's bytes.
    CacheLoad,
}

impl Calibration {
    /// Records that `operation` on `size` took `ms` milliseconds, for an
    /// agent of the component `digest` when it concerns one (exports,
    /// imports and starts are also kept per component).
    pub fn record(&self, operation: Operation, digest: Option<&Digest>, size: f64, ms: f64) {
        let mut f = lock(&self.figures);
        if let Some(digest) = digest {
            let bounded = f.components.len() < edgehost_proto::MAX_COMPONENT_MODELS;
            if bounded || f.components.contains_key(digest) {
                let c = f.components.entry(*digest).or_default();
                match operation {
                    Operation::HoldExport => c.export.add(size, ms),
                    Operation::Import => c.import.add(size, ms),
                    Operation::Start => c.start.add(0.0, ms),
                    _ => {}
                }
            }
        }
        let fit = match operation {
            Operation::Export | Operation::HoldExport => &mut f.export,
            Operation::Import => &mut f.import,
            Operation::Start => &mut f.start,
            Operation::Compile => &mut f.compile,
            Operation::CacheLoad => &mut f.cache_load,
        };
        fit.add(size, ms);
    }

    /// Records that sending `bytes` to `peer` and hearing back took `ms`,
    /// when the link's round trip was `rtt_ms`: what the send says of the
    /// link's rate is the time beyond the round trip. A send under
    /// [`MIN_RATE_SAMPLE`] bytes says nothing of it (its time is the round
    /// trip) and is not counted.
    pub fn record_send(&self, peer: &HostName, bytes: f64, ms: f64, rtt_ms: f64) {
        if bytes < MIN_RATE_SAMPLE {
            return;
        }
        let mut f = lock(&self.figures);
        f.sends
            .entry(peer.clone())
            .or_default()
            .add(bytes, (ms - rtt_ms).max(0.0));
        f.link_checked.insert(peer.clone(), Instant::now());
    }

    /// Whether the link to `peer` is due a probe at `now`: nothing has
    /// measured it for `every` since it was first seen, last measured or
    /// last probed. A `true` counts as the probe's start, so one probe runs
    /// at a time per link; `every` of zero turns probes off.
    pub fn probe_due(&self, peer: &HostName, now: Instant, every: Duration) -> bool {
        if every.is_zero() {
            return false;
        }
        let mut f = lock(&self.figures);
        if f.link_checked.len() >= edgehost_proto::MAX_LINKS && !f.link_checked.contains_key(peer) {
            return false;
        }
        let checked = f.link_checked.entry(peer.clone()).or_insert(now);
        if now.saturating_duration_since(*checked) >= every {
            *checked = now;
            true
        } else {
            false
        }
    }

    /// What the sends to `peer` measured of the link's rate; `None` before
    /// the first.
    pub fn send(&self, peer: &HostName) -> Option<Estimate> {
        lock(&self.figures).sends.get(peer).and_then(Fit::estimate)
    }

    /// Records that an LLM completion of `tokens` tokens for `agent` took
    /// `ms` milliseconds: the host's figure per token, and the agent's
    /// LLM time in the call it is making.
    pub fn record_llm(&self, agent: &str, tokens: f64, ms: f64) {
        let mut f = lock(&self.figures);
        f.llm.add(tokens, ms);
        if !(0.0..=edgehost_proto::MAX_FIGURE_MS).contains(&ms) {
            return;
        }
        if let Some(pending) = f.llm_pending.get_mut(agent) {
            *pending += ms;
        } else {
            f.llm_pending.insert(agent.to_owned(), ms);
        }
    }

    /// Records that one call of `agent` with a `bytes`-long request took
    /// `ms` milliseconds to handle, the LLM's time in it included. An
    /// agent that has called the LLM here has that time kept apart too:
    /// from then on, each of its calls counts its LLM time, none or some.
    pub fn record_call(&self, agent: &str, bytes: f64, ms: f64) {
        let mut f = lock(&self.figures);
        let llm_ms = f.llm_pending.remove(agent);
        if let Some(fit) = f.agent_llm.get_mut(agent) {
            fit.add(bytes, llm_ms.unwrap_or(0.0));
        } else if let Some(llm_ms) = llm_ms {
            let mut fit = Fit::default();
            fit.add(bytes, llm_ms);
            f.agent_llm.insert(agent.to_owned(), fit);
        }
        if let Some(fit) = f.processing.get_mut(agent) {
            fit.add(bytes, ms);
        } else {
            let mut fit = Fit::default();
            fit.add(bytes, ms);
            f.processing.insert(agent.to_owned(), fit);
        }
    }

    /// Forgets an agent that left this host.
    pub fn forget_agent(&self, agent: &str) {
        let mut f = lock(&self.figures);
        f.processing.remove(agent);
        f.agent_llm.remove(agent);
        f.llm_pending.remove(agent);
    }

    /// The LLM time per call of `agent` (T_LLM), when it has called the
    /// LLM here: part of its [`Calibration::processing`], and the part
    /// that does not depend on the host's CPU.
    pub fn llm_per_call(&self, agent: &str) -> Option<Estimate> {
        lock(&self.figures)
            .agent_llm
            .get(agent)
            .and_then(Fit::estimate)
    }

    /// The measured processing time of `agent`.
    pub fn processing(&self, agent: &str) -> Option<Estimate> {
        lock(&self.figures)
            .processing
            .get(agent)
            .and_then(Fit::estimate)
    }

    /// The figures as they travel in this host's report; `rtts` are the
    /// current round-trip times of its connections, by peer.
    pub fn model(&self, rtts: &[(HostName, f64)]) -> HostModel {
        let f = lock(&self.figures);
        let mut links: Vec<LinkModel> = rtts
            .iter()
            .map(|(peer, rtt_ms)| LinkModel {
                peer: peer.clone(),
                rtt_ms: *rtt_ms,
                send: f.sends.get(peer).and_then(Fit::estimate),
            })
            .collect();
        for (peer, fit) in &f.sends {
            if !links.iter().any(|l| &l.peer == peer) {
                links.push(LinkModel {
                    peer: peer.clone(),
                    rtt_ms: 0.0,
                    send: fit.estimate(),
                });
            }
        }
        links.sort_by(|a, b| a.peer.cmp(&b.peer));
        links.truncate(edgehost_proto::MAX_LINKS);
        let mut components: Vec<ComponentModel> = f
            .components
            .iter()
            .map(|(digest, c)| ComponentModel {
                digest: *digest,
                export: c.export.estimate(),
                import: c.import.estimate(),
                start: c.start.estimate(),
            })
            .collect();
        components.sort_by_key(|c| c.digest.to_string());
        HostModel {
            components,
            export: f.export.estimate(),
            import: f.import.estimate(),
            start: f.start.estimate(),
            compile: f.compile.estimate(),
            cache_load: f.cache_load.estimate(),
            llm: f.llm.estimate(),
            links,
        }
    }
}

/// The smallest send that counts towards a link's rate, bytes: at 20
/// Mbit/s, 16 KiB take 6.5 ms beyond the round trip, well above its jitter.
pub const MIN_RATE_SAMPLE: f64 = 16.0 * 1024.0;

/// The padding of a link probe, bytes: 26 ms beyond the round trip at 20
/// Mbit/s, within the connection's initial window, and at the default
/// `probe_ms` about 1 KiB/s per peer.
pub const PROBE_BYTES: usize = 64 * 1024;

/// Megabytes (MiB) in bytes, the unit the cost model counts state in.
const MIB: f64 = 1024.0 * 1024.0;

/// How long a state of `bytes` spends on the wire to a peer, beyond the
/// round trip, milliseconds: at the link's measured rate (`send`) or its
/// declared bandwidth, whichever is faster.
/// The declared bandwidth prices it as the cost model's T_m^tra does.
pub fn crossing_ms(send: Option<&Estimate>, bytes: f64, declared_mbps: f64) -> f64 {
    let declared =
        edgehost_placement::cost::memory_transfer_s(bytes / MIB, declared_mbps.max(1e-3)) * 1e3;
    send.map_or(declared, |e| (e.ms_per_unit * bytes).min(declared))
}

/// Whether a state crosses once, with the agent held: its time on the
/// wire is within a round trip, so a pre-copy would cost a round trip more
/// than it saves downtime.
pub fn stop_and_copy(crossing_ms: f64, rtt_ms: f64) -> bool {
    crossing_ms <= rtt_ms
}

/// Where each figure of a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A measurement.
    Measured,
    /// The documented default of the cost model.
    Default,
}

/// The cost model's constants for moving an agent of the component
/// `digest` from `source` to `target`: export from the source's figures,
/// initiation and import from the target's (the component's own where
/// measured, else the host's), each falling back to
/// [`CostParams::default`] when not measured yet.
pub fn migration_params(
    source: &HostModel,
    target: &HostModel,
    digest: &Digest,
    component_bytes: f64,
) -> CostParams {
    let mut p = CostParams::default();
    if let Some(e) = source.export_of(digest) {
        p.export_base_s = e.base_ms() / 1e3;
        p.export_mb_per_s = rate_mb_per_s(&e);
    }
    if let Some(e) = target.import_of(digest) {
        p.load_base_s = e.base_ms() / 1e3;
        p.load_mb_per_s = rate_mb_per_s(&e);
    }
    if let Some(ms) = target.start_ms_of(digest, component_bytes) {
        // Measured starts already include whatever the host runs beside:
        // no separate growth per resident agent is assumed.
        p.init_base_s = ms / 1e3;
        p.init_per_agent_s = 0.0;
    }
    p
}

/// MB/s implied by a fit's slope; effectively unlimited for a flat fit.
fn rate_mb_per_s(e: &Estimate) -> f64 {
    if e.ms_per_unit > 0.0 {
        1e3 / (e.ms_per_unit * MIB)
    } else {
        1e12
    }
}

/// What a migration moves, for its prediction.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    /// The target's name.
    pub to: &'a str,
    /// The agent's component.
    pub digest: &'a Digest,
    /// The component's size, bytes.
    pub component_bytes: f64,
    /// The state's size, bytes.
    pub state_bytes: f64,
    /// Agents the target will run.
    pub agents_on_target: usize,
    /// The link's declared bandwidth, Mbit/s, while it is not measured.
    pub declared_mbps: f64,
}

/// The predicted parts of `m` from the host modelled by `source` to the
/// one modelled by `target`. Each part says where it came from.
pub fn predict_migration(
    source: &HostModel,
    target: &HostModel,
    m: &Move<'_>,
) -> (MigrationTimes, [Source; 4]) {
    use edgehost_placement::cost::{export_time_s, init_time_s, load_time_s};
    let p = migration_params(source, target, m.digest, m.component_bytes);
    let state_mb = m.state_bytes / MIB;
    let measured = |known: bool| {
        if known {
            Source::Measured
        } else {
            Source::Default
        }
    };
    let link = source.link(m.to);
    let send = link.and_then(|l| l.send);
    // The state crosses at the link's measured rate (its declared one
    // before a send measured it), whichever is faster, as the source
    // decides. It crosses once, with the agent held, when that takes less
    // than a round trip; otherwise as a pre-copy and then a delta: two
    // exchanges on the link.
    let on_wire_ms = crossing_ms(send.as_ref(), m.state_bytes, m.declared_mbps);
    let transfer_ms = match link.map(|l| l.rtt_ms).filter(|r| *r > 0.0) {
        Some(rtt_ms) if stop_and_copy(on_wire_ms, rtt_ms) => rtt_ms + on_wire_ms,
        Some(rtt_ms) => 2.0 * rtt_ms + on_wire_ms,
        None => on_wire_ms,
    };
    (
        MigrationTimes {
            export_ms: export_time_s(state_mb, &p) * 1e3,
            transfer_ms,
            initiation_ms: init_time_s(m.agents_on_target, &p) * 1e3,
            load_ms: load_time_s(state_mb, &p) * 1e3,
        },
        [
            measured(source.export_of(m.digest).is_some()),
            measured(send.is_some()),
            measured(target.start_ms_of(m.digest, m.component_bytes).is_some()),
            measured(target.import_of(m.digest).is_some()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_of_one_size_predicts_its_mean_and_scales_through_the_origin() {
        let mut fit = Fit::default();
        for ms in [1.0, 1.2, 0.8, 1.0] {
            fit.add(1000.0, ms);
        }
        let e = fit.estimate().unwrap();
        assert_eq!(e.samples, 4);
        assert!((e.predict_ms(1000.0) - 1.0).abs() < 1e-9);
        assert!((e.predict_ms(2000.0) - 2.0).abs() < 1e-9);
        assert!(e.spread_ms > 0.1 && e.spread_ms < 0.2, "{e:?}");
    }

    #[test]
    fn a_fit_over_sizes_finds_the_fixed_part_and_the_rate() {
        let mut fit = Fit::default();
        // 0.5 ms fixed plus 1 ms per 1000 units, over varied sizes.
        for i in 0..200 {
            let size = f64::from(i % 10) * 1000.0;
            fit.add(size, 0.5 + size / 1000.0);
        }
        let e = fit.estimate().unwrap();
        assert!((e.ms_per_unit - 1e-3).abs() < 1e-6, "{e:?}");
        assert!((e.base_ms() - 0.5).abs() < 1e-3, "{e:?}");
        assert!(e.spread_ms < 1e-6);
    }

    #[test]
    fn a_fit_follows_a_change_within_tens_of_samples() {
        let mut fit = Fit::default();
        for _ in 0..100 {
            fit.add(100.0, 10.0);
        }
        for _ in 0..40 {
            fit.add(100.0, 1.0);
        }
        let e = fit.estimate().unwrap();
        assert!(e.predict_ms(100.0) < 1.2, "{e:?}");
    }

    #[test]
    fn an_agents_llm_time_is_kept_apart_from_its_processing() {
        let calibration = Calibration::default();
        // A call that waited 300 ms for the LLM, out of 400 ms.
        calibration.record_llm("planner", 50.0, 300.0);
        calibration.record_call("planner", 100.0, 400.0);
        // A call that did not ask the LLM counts as none.
        calibration.record_call("planner", 100.0, 100.0);
        // An agent that never asked it has no LLM figure.
        calibration.record_call("index", 100.0, 5.0);
        let llm = calibration.llm_per_call("planner").expect("measured");
        assert_eq!(llm.samples, 2);
        assert!((llm.mean_ms - 150.0).abs() < 1e-9, "{llm:?}");
        let processing = calibration.processing("planner").expect("measured");
        assert!((processing.mean_ms - 250.0).abs() < 1e-9, "{processing:?}");
        assert!(calibration.llm_per_call("index").is_none());
        // The host's figure per token counts every completion.
        let per_token = calibration.model(&[]).llm.expect("measured");
        assert_eq!(per_token.samples, 1);
        calibration.forget_agent("planner");
        assert!(calibration.llm_per_call("planner").is_none());
    }

    #[test]
    fn a_link_is_probed_only_after_a_quiet_period() {
        let calibration = Calibration::default();
        let peer: HostName = "b".parse().unwrap();
        let every = Duration::from_secs(60);
        let start = Instant::now();
        // First seen: not yet.
        assert!(!calibration.probe_due(&peer, start, every));
        assert!(!calibration.probe_due(&peer, start + every / 2, every));
        // Quiet for a period: due once, then not again until the next.
        assert!(calibration.probe_due(&peer, start + every, every));
        assert!(!calibration.probe_due(&peer, start + every, every));
        assert!(calibration.probe_due(&peer, start + every * 2, every));
        // Off.
        assert!(!calibration.probe_due(&peer, start + every * 9, Duration::ZERO));
        // A migration's send measures the link: the quiet period restarts.
        let other: HostName = "c".parse().unwrap();
        assert!(!calibration.probe_due(&other, start, every));
        calibration.record_send(&other, 65536.0, 5.0, 1.0);
        assert!(!calibration.probe_due(&other, start + every, every));
    }

    #[test]
    fn garbage_samples_are_ignored() {
        let mut fit = Fit::default();
        fit.add(f64::NAN, 1.0);
        fit.add(1.0, f64::INFINITY);
        fit.add(-1.0, 1.0);
        fit.add(1.0, 1e200);
        assert_eq!(fit.estimate(), None);
    }

    fn moving(digest: &Digest, state_bytes: f64) -> Move<'_> {
        Move {
            to: "b",
            digest,
            component_bytes: 70000.0,
            state_bytes,
            agents_on_target: 3,
            declared_mbps: 100.0,
        }
    }

    #[test]
    fn unmeasured_figures_fall_back_to_the_defaults_and_say_so() {
        let empty = HostModel::default();
        let digest = Digest::of(b"c");
        let (times, sources) = predict_migration(&empty, &empty, &moving(&digest, MIB));
        assert_eq!(sources, [Source::Default; 4]);
        let d = CostParams::default();
        assert!((times.export_ms - (d.export_base_s + 1.0 / d.export_mb_per_s) * 1e3).abs() < 1e-6);
        assert!((times.transfer_ms - 80.0).abs() < 1e-6);
    }

    #[test]
    fn measured_figures_replace_the_defaults() {
        let calibration = Calibration::default();
        let (digest, other) = (Digest::of(b"c"), Digest::of(b"python"));
        for _ in 0..5 {
            calibration.record(Operation::HoldExport, Some(&digest), 65536.0, 0.1);
            // Exports after calls are slower; they feed the host's figure
            // but not the component's, which a migration is predicted from.
            calibration.record(Operation::Export, Some(&digest), 65536.0, 0.4);
            calibration.record(Operation::Import, Some(&digest), 65536.0, 0.2);
            calibration.record(Operation::Start, Some(&digest), 70000.0, 0.5);
            // Another component's agents are slower: they do not count
            // for this one's prediction.
            calibration.record(Operation::HoldExport, Some(&other), 65536.0, 3.0);
            calibration.record(Operation::Start, Some(&other), 2e7, 9.0);
            // 1.5 ms for 64 KiB over a 0.3 ms round trip: 1.2 ms on the wire.
            calibration.record_send(&"b".parse().unwrap(), 65536.0, 1.5, 0.3);
            // A small send is its round trip: it says nothing of the rate.
            calibration.record_send(&"b".parse().unwrap(), 100.0, 40.0, 0.3);
        }
        let source = calibration.model(&[("b".parse().unwrap(), 0.3)]);
        let target = source.clone();
        let (times, sources) = predict_migration(&source, &target, &moving(&digest, 65536.0));
        assert_eq!(sources, [Source::Measured; 4]);
        assert!((times.export_ms - 0.1).abs() < 1e-9, "{times:?}");
        let host_wide = source.export.expect("the host's export figure");
        assert!(
            host_wide.mean_ms > 0.1 && host_wide.samples == 15,
            "{host_wide:?}"
        );
        assert!((times.load_ms - 0.2).abs() < 1e-9, "{times:?}");
        assert!((times.initiation_ms - 0.5).abs() < 1e-9, "{times:?}");
        // 1.2 ms on the wire is over the 0.3 ms round trip: a pre-copy and
        // a delta, two round trips.
        assert!((times.transfer_ms - 1.8).abs() < 1e-9, "{times:?}");
        assert_eq!(source.links[0].rtt_ms, 0.3);
    }
}
