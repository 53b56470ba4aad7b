#!/usr/bin/env bash
# Opt-in tier: the fleet dashboard in a real browser (headless Chromium).
#
#   tests/browser/run.sh            # check the page's DOM
#   tests/browser/run.sh --shots    # ...and rewrite docs/dashboard-*.png
#
# Installs Debian's chromium if it is missing, builds the host and the
# memory agent, then:
#   - starts two hosts, pushes an agent to one, serves the dashboard with
#     the fleet's read-only viewer certificate, and checks from the DOM that
#     Chromium built from the page that both hosts are on the map and in the
#     table, and the agent is on its host;
#   - migrates the agent and checks, from a fresh page, that the DOM shows
#     it on its new host and the migration (arrow and table row);
#   - with --shots, starts the four-host demo fleet with a few agents and
#     takes two screenshots: the fleet, and just after a migration (the
#     arrow stays on the map for 30 s).
# The default test suite checks the JSON and the event stream the page
# reads (host/cli/tests/fleet.rs); this tier checks the page itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "browser: FAILED: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

shots=false
[ "${1:-}" = "--shots" ] && shots=true

if ! command -v chromium > /dev/null 2>&1; then
    step "Installing chromium"
    apt-get update -qq && apt-get install -y -qq chromium
fi

step "Building the host and the memory agent"
cargo build --locked -p edgehost
cargo build --locked --profile guest --target wasm32-wasip2 -p memory-agent
edgehost=$PWD/target/debug/edgehost
memory=$PWD/target/wasm32-wasip2/guest/memory_agent.wasm

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts a fleet of $1 hosts in $work/$2 and a dashboard for it, and sets
# `at` to the dashboard's address. (Not run in a subshell: the processes it
# starts must reach `pids`, for the clean-up.)
start() {
    "$edgehost" up "$1" --dir "$work/$2" --heartbeat-ms 300 > "$work/$2.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 600); do [ -f "$work/$2/ready" ] && break; sleep 0.1; done
    [ -f "$work/$2/ready" ] || { cat "$work/$2.log" >&2; fail "the fleet did not start"; }
    local port
    port=$(free_port)
    EDGEHOST_CLIENT_CONFIG="$work/$2/viewer.toml" \
        "$edgehost" dashboard --listen "127.0.0.1:$port" --interval-ms 300 > "$work/$2-dashboard.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q "^dashboard on" "$work/$2-dashboard.log" && break; sleep 0.1; done
    grep -q "^dashboard on" "$work/$2-dashboard.log" || { cat "$work/$2-dashboard.log" >&2; fail "the dashboard did not start"; }
    at="127.0.0.1:$port"
}

chrome() {
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/chrome" "$@" 2> /dev/null
}

# The DOM Chromium built from the page, once its script ran.
dom() { chrome --dump-dom "http://$1/"; }

# Waits (bounded) until the page's DOM contains every pattern given.
expect_dom() {
    local at=$1; shift
    local page=""
    for _ in $(seq 1 30); do
        page=$(dom "$at")
        local missing=""
        for pattern in "$@"; do
            grep -q -- "$pattern" <<< "$page" || missing="$pattern"
        done
        [ -z "$missing" ] && return 0
        sleep 0.5
    done
    echo "$page" > "$work/last-dom.html"
    fail "the page never showed: $missing (DOM in $work/last-dom.html)"
}

step "Two hosts, an agent, the dashboard"
start 2 two
export EDGEHOST_CLIENT_CONFIG="$work/two/client.toml"
"$edgehost" push "$memory" --name notes --to beijing > /dev/null
[ "$("$edgehost" invoke notes --input "remember the dashboard")" = "noted #1" ] || fail "invoke"
expect_dom "$at" 'data-host="beijing"' 'data-host="shanghai"' 'data-agent="notes" data-on="beijing"' \
    '2 host(s), 2 reachable'
echo "the page shows both hosts and the agent on beijing"

step "The agent moves; the page follows"
"$edgehost" migrate notes --to shanghai > /dev/null
expect_dom "$at" 'data-agent="notes" data-on="shanghai"' 'class="arrow"' 'data-migration="notes"' \
    'beijing → shanghai'
echo "the page shows the agent on shanghai and its migration"

if $shots; then
    step "Screenshots of the four-host demo fleet"
    start 4 four
    export EDGEHOST_CLIENT_CONFIG="$work/four/client.toml"
    for name in travel-notes planner shopping-list diary translator; do
        "$edgehost" push "$memory" --name "$name" > /dev/null
        "$edgehost" invoke "$name" --input "remember $name" > /dev/null
    done
    expect_dom "$at" 'data-agent="translator"' '4 host(s), 4 reachable'
    sleep 1
    chrome --window-size=1280,960 --screenshot="$work/fleet.png" "http://$at/" > /dev/null
    from=$("$edgehost" ps --json | python3 -c 'import json, sys; print(next(a["host"] for a in json.load(sys.stdin)["agents"] if a["name"] == "travel-notes"))')
    to=$("$edgehost" ps --json | python3 -c 'import json, sys; print(next(h["name"] for h in json.load(sys.stdin)["hosts"] if h["name"] != "'"$from"'"))')
    "$edgehost" migrate travel-notes --to "$to" > /dev/null
    expect_dom "$at" 'data-agent="travel-notes" data-on="'"$to"'"' 'class="arrow"'
    chrome --window-size=1280,960 --screenshot="$work/migration.png" "http://$at/" > /dev/null
    cp "$work/fleet.png" docs/dashboard-fleet.png
    cp "$work/migration.png" docs/dashboard-migration.png
    ls -l docs/dashboard-fleet.png docs/dashboard-migration.png
fi

printf '\nbrowser: all checks passed\n'
