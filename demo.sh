#!/usr/bin/env bash
# The edgehost demo: build the host and an example agent, then run the agent,
# carry its memory to a fresh instance through its state blob, and watch the
# host stop a hostile agent.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

step "Building the edgehost binary and the example agents (the first build takes a few minutes)"
cargo build --release --locked -p edgehost
cargo build --locked --profile guest --target wasm32-wasip2 -p memory-agent -p hostile-agent

edgehost=target/release/edgehost
agent=target/wasm32-wasip2/guest/memory_agent.wasm
hostile=target/wasm32-wasip2/guest/hostile_agent.wasm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export EDGEHOST_CACHE_DIR="$work/cache"

step "What is this component?"
show "$edgehost" inspect "$agent"

step "This machine, as the placement engine sees it"
show "$edgehost" status

step "Run the agent: it remembers a note, and its memory is exported as a state blob"
show "$edgehost" run "$agent" --input "remember the meeting moved to 3pm" --state-out "$work/one.state"
echo "(state blob: $(wc -c < "$work/one.state") bytes; the component itself: $(wc -c < "$agent") bytes)"

step "A fresh instance imports the blob and carries on where the first stopped"
show "$edgehost" run "$agent" --state-in "$work/one.state" --input "remember bring the slides" --state-out "$work/two.state"
show "$edgehost" run "$agent" --state-in "$work/two.state" --input "notes"
show "$edgehost" run "$agent" --state-in "$work/two.state" --input "when is the meeting?"

step "A broken state blob is refused and changes nothing"
printf 'garbage' > "$work/bad.state"
show "$edgehost" run "$agent" --state-in "$work/bad.state" --input "notes" || true

step "A hostile agent: an endless loop is stopped at its deadline, a memory bomb at its cap"
show "$edgehost" run "$hostile" --input loop --timeout-ms 300 || true
show "$edgehost" run "$hostile" --input bomb || true
