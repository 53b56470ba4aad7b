//! Migrations across architectures: a fleet of two x86_64 hosts and one
//! aarch64 host (the cross-built edgehost under qemu-user), started with
//! `edgehost up 3 --arm 1`. The memory agent, holding 64 KiB and then
//! 1 MiB of notes, moves x86 → ARM, ARM → x86 and x86 → x86, and the
//! table gives each direction's whole migration (eq. 3: export, transfer,
//! initiation, load) and downtime, with the compile of the agent on each
//! kind of host. The ARM side is emulated: its figures are an upper bound
//! for a real ARM board.
//!
//! Run with `cargo bench -p edgehost --bench arm`, with the aarch64 build
//! at `EDGEHOST_ARM_BINARY` or in `target/aarch64-unknown-linux-gnu/release/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgehost_tests::MEMORY_AGENT;
use serde_json::Value;

// The command-line tests' fleet: `edgehost up` with its files in a
// temporary directory, stopped when dropped.
#[path = "../tests/common/mod.rs"]
mod common;

use common::fleet::LocalFleet;

/// Moves per direction and state size, after one warm-up round trip.
const ROUNDS: usize = 10;

fn arm_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EDGEHOST_ARM_BINARY") {
        return Some(PathBuf::from(path));
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_edgehost"));
    let target = exe.parent()?.parent()?;
    let path = target.join("aarch64-unknown-linux-gnu/release/edgehost");
    path.is_file().then_some(path)
}

fn migrate(fleet: &LocalFleet, agent: &str, to: &str) -> Value {
    fleet.json(&["migrate", agent, "--to", to, "--json"])
}

fn total_ms(report: &Value) -> f64 {
    ["export_ms", "transfer_ms", "initiation_ms", "load_ms"]
        .iter()
        .map(|p| report["measured_ms"][p].as_f64().expect("a part"))
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * 0.9).round() as usize]
}

fn main() {
    let Some(arm) = arm_binary() else {
        eprintln!(
            "no aarch64 build of edgehost: `cargo build --release --target aarch64-unknown-linux-gnu -p edgehost` (README, \"ARM and x86 hosts\") or set EDGEHOST_ARM_BINARY"
        );
        std::process::exit(2);
    };
    // A cache of its own, empty: the first move to each host compiles.
    let fleet = LocalFleet::launch_within(
        3,
        &[
            "--arm",
            "1",
            "--arm-binary",
            arm.to_str().expect("a UTF-8 path"),
        ],
        true,
        Duration::from_secs(180),
    );
    let ps = fleet.json(&["ps", "--json"]);
    println!("hosts:");
    for h in ps["hosts"].as_array().expect("hosts") {
        println!(
            "  {} {} (reachable: {})",
            h["name"].as_str().unwrap_or("?"),
            h["arch"].as_str().unwrap_or("?"),
            h["reachable"]
        );
    }
    let (x86, x86_other, arm_host) = ("beijing", "shanghai", "guiyang");

    println!();
    println!("| state | direction | migration p50 | p90 | downtime p50 | p90 | moves |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut compiles = Vec::new();
    for (label, size) in [("64 KiB", 64usize << 10), ("1 MiB", 1 << 20)] {
        let agent = format!("crosser-{}", size >> 10);
        let pushed = fleet.json(&[
            "push",
            MEMORY_AGENT,
            "--name",
            &agent,
            "--to",
            x86,
            "--json",
        ]);
        let note = fleet.dir.path().join("note.txt");
        let mut body = b"remember ".to_vec();
        body.extend(std::iter::repeat_n(b'n', size));
        std::fs::write(&note, body).expect("writing the note");
        let o = fleet.run(&[
            "invoke",
            &agent,
            "--input-file",
            note.to_str().expect("a path"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        // Warm-up: the first move to each host compiles the agent there.
        let first_arm = migrate(&fleet, &agent, arm_host);
        let back = migrate(&fleet, &agent, x86);
        migrate(&fleet, &agent, x86_other);
        migrate(&fleet, &agent, x86);
        if size == 64 << 10 {
            compiles.push((
                "aarch64 (emulated)",
                first_arm["target_compile_ms"].as_f64(),
                first_arm["target_cache_hit"].as_bool(),
            ));
            // The x86 hosts share one artifact cache: the push compiled it.
            compiles.push((
                "x86_64",
                pushed["load_ms"].as_f64(),
                pushed["cache_hit"].as_bool(),
            ));
        }
        assert!(back["state_bytes"].as_u64().expect("state") as usize > size);

        let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
            ("x86 → ARM", vec![], vec![]),
            ("ARM → x86", vec![], vec![]),
            ("x86 → x86", vec![], vec![]),
        ];
        for _ in 0..ROUNDS {
            for (row, to) in [(0, arm_host), (1, x86), (2, x86_other)] {
                let r = migrate(&fleet, &agent, to);
                rows[row].1.push(total_ms(&r));
                rows[row]
                    .2
                    .push(r["downtime_ms"].as_f64().expect("downtime"));
                assert_eq!(r["component_bytes_sent"], 0, "{r}");
            }
            // Back to the x86 host the next round starts from.
            migrate(&fleet, &agent, x86);
        }
        for (direction, total, downtime) in rows {
            println!(
                "| {label} | {direction} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                median(total.clone()),
                p90(total),
                median(downtime.clone()),
                p90(downtime),
                ROUNDS
            );
        }
        let o = fleet.run(&["release", &agent]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    println!();
    for (host, ms, hit) in compiles {
        println!(
            "compile of the memory agent ({} bytes) on the {host} host: {:.1} ms (cache hit: {})",
            std::fs::metadata(MEMORY_AGENT).map_or(0, |m| m.len()),
            ms.unwrap_or(f64::NAN),
            hit.unwrap_or(false)
        );
    }
}
