#!/usr/bin/env bash
# The edgehost demo: build the host and the example agents; run an agent and
# carry its memory to a fresh instance through its state blob; start a fleet
# of four hosts on this machine, let AntLLM place agents on it, call them
# across hosts, move one by shipping only its state, move a Python agent the
# same way, let ALM follow a user who travels, and lose a host; watch a
# hostile agent being stopped; run the paper's experiment with real CBIR
# agents on an emulated four-city WAN; and, where qemu-user and the aarch64 cross
# toolchain are installed, move an agent between an ARM and an x86 host.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

step "Building the edgehost binary and the example agents (the first build takes a few minutes)"
cargo build --release --locked -p edgehost -p edgehost-wan
cargo build --locked --profile guest --target wasm32-wasip2 -p memory-agent -p hostile-agent \
    -p cbir-features-agent -p cbir-index-agent
# The Python dialog agent, with componentize-py from a virtual environment.
pyenv=target/pyenv
if [ ! -x "$pyenv/bin/componentize-py" ]; then
    python3 -m venv "$pyenv"
    "$pyenv/bin/pip" install --quiet componentize-py==0.25.1
fi
"$pyenv/bin/python" agents/python/build.py agents/python/dialog -o target/python/dialog.wasm
"$pyenv/bin/python" agents/python/build.py agents/python/planner -o target/python/planner.wasm

edgehost=target/release/edgehost
agent=target/wasm32-wasip2/guest/memory_agent.wasm
hostile=target/wasm32-wasip2/guest/hostile_agent.wasm
dialog=target/python/dialog.wasm
work=$(mktemp -d)
fleet_pid=
dashboard_pid=
mixed_pid=
cleanup() {
    if [ -n "$mixed_pid" ]; then kill -TERM "$mixed_pid" 2>/dev/null || true; wait "$mixed_pid" 2>/dev/null || true; fi
    if [ -n "$dashboard_pid" ]; then kill -TERM "$dashboard_pid" 2>/dev/null || true; wait "$dashboard_pid" 2>/dev/null || true; fi
    if [ -n "$fleet_pid" ]; then kill -TERM "$fleet_pid" 2>/dev/null || true; wait "$fleet_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
export EDGEHOST_CACHE_DIR="$work/cache"

step "What is this component?"
show "$edgehost" inspect "$agent"

step "Run the agent once: it remembers a note, and its memory leaves as a state blob"
show "$edgehost" run "$agent" --input "remember the meeting moved to 3pm" --state-out "$work/one.state"
echo "(state blob: $(wc -c < "$work/one.state") bytes; the component itself: $(wc -c < "$agent") bytes)"

step "A fresh instance imports the blob and carries on where the first stopped"
show "$edgehost" run "$agent" --state-in "$work/one.state" --input "remember bring the slides" --state-out "$work/two.state"
show "$edgehost" run "$agent" --state-in "$work/two.state" --input "notes"

step "A fleet of four hosts on this machine (Beijing, Shanghai, Guiyang, Singapore), mutual TLS under a throwaway CA"
# Each host keeps its own artifact cache, as on separate machines.
env -u EDGEHOST_CACHE_DIR "$edgehost" up 4 --dir "$work/fleet" --heartbeat-ms 300 > "$work/up.log" 2>&1 &
fleet_pid=$!
for _ in $(seq 1 600); do [ -f "$work/fleet/ready" ] && break; sleep 0.1; done
[ -f "$work/fleet/ready" ] || { cat "$work/up.log"; exit 1; }
cat "$work/up.log"
export EDGEHOST_CLIENT_CONFIG="$work/fleet/client.toml"
# The live dashboard, with the fleet's read-only certificate, while the demo runs.
EDGEHOST_CLIENT_CONFIG="$work/fleet/viewer.toml" "$edgehost" dashboard \
    --listen "127.0.0.1:${EDGEHOST_DASHBOARD_PORT:-7480}" > "$work/dashboard.log" 2>&1 &
dashboard_pid=$!
sleep 1
head -1 "$work/dashboard.log" || true
show "$edgehost" ps

step "Push agents: AntLLM chooses the host and says why; a second push of the same component uploads nothing"
show "$edgehost" push "$agent" --name notes
show "$edgehost" push "$agent" --name memory --to shanghai
show "$edgehost" push "$agent" --name journal --to shanghai
show "$edgehost" push "$hostile" --name caller --to guiyang

step "Invoke by name from anywhere: the fleet routes to the owning host"
show "$edgehost" invoke notes --input "remember the demo works"
show "$edgehost" invoke notes --input "notes"
sleep 1
echo "(the caller agent on guiyang calls its dependency 'memory' on shanghai through the host)"
show "$edgehost" invoke caller --input "call memory remember written from guiyang"
show "$edgehost" invoke memory --input "notes"
show "$edgehost" ps

step "Migrate: 'memory' moves to beijing and back; only its state blob travels (the component once, if a host lacks it)"
show "$edgehost" migrate memory --to beijing
show "$edgehost" migrate memory --to shanghai
show "$edgehost" invoke memory --input "notes"

step "A Python agent: the dialog agent carries CPython (an 18 MB component); its host compiles it once, and it moves with a state of a few hundred bytes"
show "$edgehost" inspect "$dialog"
show "$edgehost" push "$dialog" --name dialog --to beijing
show "$edgehost" invoke dialog --input "remember the train leaves at 9"
show "$edgehost" invoke dialog --input "when does the train leave?"
echo "(singapore lacks the component: the first move uploads it and singapore compiles it before the agent is held; the way back moves only the state)"
show "$edgehost" migrate dialog --to singapore
show "$edgehost" migrate dialog --to beijing
show "$edgehost" invoke dialog --input "stats"

step "A user travels to Singapore: ALM reconsiders their agent 'journal' and moves it only if the net gain is positive"
show "$edgehost" client attach singapore --agent journal
show "$edgehost" events
show "$edgehost" ps

step "Lose a host: kill -9 guiyang; the others notice and keep serving"
kill -9 "$(cat "$work/fleet/guiyang/pid")"
sleep 2
show "$edgehost" ps
show "$edgehost" invoke memory --input "notes"
show "$edgehost" invoke caller --input "echo are you there?" || true

step "A hostile agent: an endless loop is stopped at its deadline, a memory bomb at its cap"
show "$edgehost" run "$hostile" --input loop --timeout-ms 300 || true
show "$edgehost" run "$hostile" --input bomb || true

step "The paper's experiment, live: CBIR tasks on an emulated four-city WAN (30-90 ms round trips, 20 and 30 Mbit/s uplinks, no root), placed by AntLLM and each baseline, while the user travels from Beijing to Singapore and ALM moves the agents that follow"
mkdir -p "$work/cbir"
cp target/wasm32-wasip2/guest/cbir_features_agent.wasm target/wasm32-wasip2/guest/cbir_index_agent.wasm \
    target/python/planner.wasm "$work/cbir/"
show target/release/edgehost-wan demo --agents "$work/cbir" --out target/demo
echo "(CSV, SVG and PNG charts in target/demo; the full sweep, its figures and what they mean: docs/experiment.md)"

step "ARM and x86 in one fleet: an aarch64 host (under qemu-user) and an x86_64 host; the agent crosses with its state"
if command -v qemu-aarch64 > /dev/null && command -v aarch64-linux-gnu-gcc > /dev/null \
    && [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]; then
    echo "(cross-building edgehost for aarch64: a few minutes the first time)"
    rustup target add aarch64-unknown-linux-gnu > /dev/null 2>&1
    cargo build --release --locked --target aarch64-unknown-linux-gnu -p edgehost
    env -u EDGEHOST_CACHE_DIR "$edgehost" up 2 --arm 1 --dir "$work/mixed" --heartbeat-ms 300 > "$work/mixed.log" 2>&1 &
    mixed_pid=$!
    for _ in $(seq 1 1800); do [ -f "$work/mixed/ready" ] && break; sleep 0.1; done
    [ -f "$work/mixed/ready" ] || { cat "$work/mixed.log"; exit 1; }
    cat "$work/mixed.log"
    export EDGEHOST_CLIENT_CONFIG="$work/mixed/client.toml"
    sleep 1
    show "$edgehost" ps
    show "$edgehost" push "$agent" --name crosser --to shanghai
    show "$edgehost" invoke crosser --input "remember written on ARM"
    show "$edgehost" migrate crosser --to beijing
    show "$edgehost" invoke crosser --input "remember written on x86"
    show "$edgehost" migrate crosser --to shanghai
    show "$edgehost" invoke crosser --input "notes"
else
    echo "(skipped: this step needs qemu-user and the aarch64 cross toolchain;"
    echo " on Debian: apt install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
fi
