//! `edgehost-wan`: a fleet of edgehost hosts on an emulated WAN, on this
//! machine and without root, until Ctrl-C; or the paper's experiment on
//! such fleets.
//!
//! ```text
//! edgehost-wan up [--sites N] [--loss P] [--seed S] [--root] [--dir DIR] [--edgehost FILE] [-- UP_ARGS...]
//! edgehost-wan experiment --agents DIR --out DIR [--quick] [--root] [--edgehost FILE]
//! ```
//!
//! `up` starts the relay for the first N of the paper's sites (Beijing,
//! Shanghai, Guiyang, Singapore: round trips of 30 to 90 ms, 20 and
//! 30 Mbit/s uplinks), then `edgehost up N` with each host advertising its
//! site's front, prints where the client configuration is, and stops the
//! fleet and the relay on Ctrl-C, SIGTERM, or when the fleet ends. With
//! `--root`, each host runs in a network namespace of its own instead,
//! behind a veth pair whose `tbf` queue is its uplink; the namespaces go
//! when the fleet stops. Either way nothing is left behind.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use edgehost_wan::experiment;
use edgehost_wan::{Topology, WanFleet};

#[derive(Parser)]
#[command(
    name = "edgehost-wan",
    about = "A fleet on an emulated WAN, without root"
)]
enum Cli {
    /// A fleet on the emulated WAN until Ctrl-C.
    Up(Args),
    /// The paper's experiment with real CBIR agents on emulated fleets of
    /// 2 to 4 sites: CSV, charts and a summary in --out.
    Experiment(ExperimentArgs),
    /// The demo: the four sites, CBIR tasks placed by AntLLM and by each
    /// baseline while the user travels from Beijing to Singapore, each task
    /// shown as it ends; then a table per algorithm and the charts.
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Where the components are: cbir_features_agent.wasm,
    /// cbir_index_agent.wasm and planner.wasm.
    #[arg(long, value_name = "DIR")]
    agents: PathBuf,
    /// Where the results go.
    #[arg(long, value_name = "DIR", default_value = "target/demo")]
    out: PathBuf,
    /// Each host in a network namespace of its own (needs root).
    #[arg(long)]
    root: bool,
    /// The edgehost binary (default: the one beside this program).
    #[arg(long, value_name = "FILE")]
    edgehost: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExperimentArgs {
    /// Where the components are: cbir_features_agent.wasm,
    /// cbir_index_agent.wasm and planner.wasm.
    #[arg(long, value_name = "DIR")]
    agents: PathBuf,
    /// Where the results go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The shorter run: 2 and 4 servers, 1 and 3 tasks.
    #[arg(long)]
    quick: bool,
    /// Each host in a network namespace of its own, its uplink a `tbf`
    /// queue (needs root); the relay still adds delay and loss.
    #[arg(long)]
    root: bool,
    /// The edgehost binary (default: the one beside this program).
    #[arg(long, value_name = "FILE")]
    edgehost: Option<PathBuf>,
}

#[derive(clap::Args)]
struct Args {
    /// How many of the paper's sites (1 to 4).
    #[arg(long, default_value_t = 4)]
    sites: usize,
    /// Datagrams lost on every link between sites, each way (0 to 0.5).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seeds the losses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Leave the uplinks unlimited.
    #[arg(long)]
    no_rates: bool,
    /// Each host in a network namespace of its own, its uplink a `tbf`
    /// queue (needs root); the relay still adds delay and loss. Only
    /// `--heartbeat-ms MS` may follow `--`.
    #[arg(long)]
    root: bool,
    /// Where to put the fleet's files (kept on exit when given).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The edgehost binary (default: the one beside this program).
    #[arg(long, value_name = "FILE")]
    edgehost: Option<PathBuf>,
    /// Passed to `edgehost up`.
    #[arg(last = true)]
    up_args: Vec<String>,
}

fn main() {
    let result = match Cli::parse() {
        Cli::Up(args) => run(args),
        Cli::Experiment(args) => {
            let plan = if args.quick {
                experiment::Plan::quick()
            } else {
                experiment::Plan::full()
            };
            run_experiment(args, plan)
        }
        Cli::Demo(args) => run_experiment(
            ExperimentArgs {
                agents: args.agents,
                out: args.out,
                quick: false,
                root: args.root,
                edgehost: args.edgehost,
            },
            experiment::Plan::demo(),
        ),
    };
    if let Err(e) = result {
        if edgehost_wan::cleanup::stopping() {
            // A signal stopped the fleet under the run: the signal's thread
            // exits once everything is undone.
            loop {
                std::thread::park();
            }
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn edgehost_beside(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(e) => Ok(e),
        None => Ok(std::env::current_exe()
            .context("locating this program")?
            .with_file_name("edgehost")),
    }
}

fn run_experiment(args: ExperimentArgs, plan: experiment::Plan) -> Result<()> {
    let setup = experiment::Setup {
        edgehost: edgehost_beside(args.edgehost)?,
        features: args.agents.join("cbir_features_agent.wasm"),
        index: args.agents.join("cbir_index_agent.wasm"),
        planner: args.agents.join("planner.wasm"),
        out: args.out,
        isolated: args.root,
    };
    for file in [
        &setup.edgehost,
        &setup.features,
        &setup.index,
        &setup.planner,
    ] {
        if !file.is_file() {
            anyhow::bail!("{}: no such file", file.display());
        }
    }
    // Ctrl-C or SIGTERM stops whatever fleet runs, and its namespaces.
    edgehost_wan::cleanup::on_signal().context("watching for signals")?;
    let summary = experiment::run(&setup, &plan)?;
    println!("{summary}");
    println!("results in {}", setup.out.display());
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let mut topology = Topology::paper(args.sites)
        .map_err(anyhow::Error::msg)?
        .with_loss(args.loss)
        .map_err(anyhow::Error::msg)?;
    if args.no_rates {
        topology = topology.without_rates();
    }
    let edgehost = edgehost_beside(args.edgehost)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut fleet = if args.root {
            let heartbeat_ms = match args.up_args.as_slice() {
                [] => 500,
                [flag, ms] if flag == "--heartbeat-ms" => ms
                    .parse()
                    .with_context(|| format!("--heartbeat-ms {ms:?} is not a number"))?,
                other => anyhow::bail!(
                    "with --root only `-- --heartbeat-ms MS` may follow, not {other:?}"
                ),
            };
            WanFleet::start_isolated(&edgehost, topology, args.seed, args.dir, heartbeat_ms)
                .await?
        } else {
            WanFleet::start(&edgehost, topology, args.seed, args.dir, &args.up_args).await?
        };
        for (i, site) in fleet.topology().sites.iter().enumerate() {
            println!(
                "{:<10} front {}  uplink {}",
                site.name,
                fleet.wan.front(i),
                site.uplink_mbps
                    .map_or("unlimited".to_owned(), |m| format!("{m} Mbit/s"))
            );
        }
        println!("export EDGEHOST_CLIENT_CONFIG={}", fleet.client_config().display());
        println!("Ctrl-C stops the fleet and the relay");
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                    if !fleet.running() {
                        eprintln!("the fleet stopped");
                        break;
                    }
                }
            }
        }
        let c = fleet.wan.counters();
        fleet.stop();
        println!(
            "relay: {} datagrams ({} bytes) between sites, {} lost, {} over a full uplink, {} local",
            c.delivered, c.bytes, c.lost, c.overflowed, c.local
        );
        Ok(())
    })
}
