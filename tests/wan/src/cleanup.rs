//! What a WAN run must undo however it ends: the processes it started and
//! the network namespaces it made. Each is registered while it lives, so a
//! Ctrl-C or a SIGTERM ([`on_signal`]) undoes them before the program exits,
//! as drop does on a normal exit or an error.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What is alive now.
#[derive(Default)]
struct Live {
    pids: Vec<u32>,
    namespaces: Vec<String>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    pids: Vec::new(),
    namespaces: Vec::new(),
});

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Set once a signal started undoing everything.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a signal is undoing everything: the program then exits once
/// that is done, and must not exit before.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Registers a child process to stop on a signal.
pub fn register_pid(pid: u32) {
    live().pids.push(pid);
}

/// Forgets a child process that was stopped.
pub fn unregister_pid(pid: u32) {
    live().pids.retain(|p| *p != pid);
}

/// Registers a network namespace to delete on a signal.
pub fn register_namespace(name: &str) {
    live().namespaces.push(name.to_owned());
}

/// Forgets a network namespace that was deleted.
pub fn unregister_namespace(name: &str) {
    live().namespaces.retain(|n| n != name);
}

fn running(pid: u32) -> bool {
    // A process that exited but was not yet waited for is a zombie: no
    // longer running, and it holds nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Stops every registered process (SIGTERM, then SIGKILL after 15 s) and
/// deletes every registered namespace, with its veth pair.
pub fn undo_all() {
    let Live { pids, namespaces } = std::mem::take(&mut *live());
    for pid in &pids {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|p| running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| running(**p)) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
    for name in &namespaces {
        let _ = Command::new("ip").args(["netns", "delete", name]).status();
    }
}

/// Undoes everything on Ctrl-C or SIGTERM, then exits with 130. Call once,
/// early in `main`; it runs on a thread of its own.
pub fn on_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let Ok(mut terminate) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                STOPPING.store(true, Ordering::SeqCst);
                eprintln!("\nstopping: the fleet's hosts, the relay and the namespaces");
                undo_all();
                std::process::exit(130);
            });
        })?;
    Ok(())
}
