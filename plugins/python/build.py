#!/usr/bin/env python3
"""Builds a Python edgehost policy plugin into a WebAssembly component.

    python3 build.py APP_DIR -o OUT.wasm [--componentize-py PATH]

APP_DIR holds the plugin's `app.py` (the module that ends with
`Heuristic, CostModel = export(MyPolicy)`) and any modules of its own. This
runs componentize-py against edgehost's `policy` world, with the kit
(`edgehost_policy`, next to this script) on the Python path. It is the agent
kit's builder (`agents/python/build.py`) with the policy kit's settings.
Needs nothing but componentize-py (`pip install componentize-py`).
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Nothing of the checkout is written to, not even bytecode of the builder.
sys.dont_write_bytecode = True
_spec = importlib.util.spec_from_file_location("edgehost_build", ROOT / "agents" / "python" / "build.py")
if _spec is None or _spec.loader is None:
    sys.exit(f"build.py: error: {ROOT / 'agents' / 'python' / 'build.py'}: the builder is missing")
builder = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = builder  # dataclasses look their module up there
_spec.loader.exec_module(builder)

#: Policies: `Heuristic, CostModel = export(MyPolicy)`, world `policy`.
POLICY_KIT = builder.Kit(
    what="policy plugin",
    wit_dir=ROOT / "wit" / "policy",
    world="policy",
    package=HERE / "edgehost_policy",
    exports=("Heuristic", "CostModel"),
    export_line="Heuristic, CostModel = export({name})",
)

if __name__ == "__main__":
    sys.exit(builder.main(POLICY_KIT))
