#!/usr/bin/env python3
"""Builds a Python edgehost agent into a WebAssembly component.

    python3 build.py APP_DIR -o OUT.wasm [--componentize-py PATH]

APP_DIR holds the agent's `app.py` (the module that ends with
`Guest = export(MyAgent)`) and any modules of its own. This runs
componentize-py against edgehost's `agent` world, with the kit
(`edgehost_agent`, next to this script) on the Python path. Works from any
directory; needs nothing but componentize-py (`pip install componentize-py`).
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The directory that holds the `edgehost_agent` package.
KIT_DIR = HERE
#: edgehost's WIT contracts; the agent world is `agent` in `wit/agent`.
WIT_DIR = HERE.parent.parent / "wit" / "agent"
WORLD = "agent"
#: The app module componentize-py loads; it must define `Guest`.
APP_MODULE = "app"


def main() -> int:
    parser = argparse.ArgumentParser(description="Build a Python edgehost agent component.")
    parser.add_argument("app_dir", type=Path, metavar="APP_DIR", help="directory holding app.py")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wasm")
    parser.add_argument(
        "--componentize-py",
        metavar="PATH",
        help="the componentize-py to run (default: the one next to this Python, then PATH)",
    )
    parser.add_argument("--wit", type=Path, default=WIT_DIR, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()

    app_dir = args.app_dir.resolve()
    if not (app_dir / f"{APP_MODULE}.py").is_file():
        return fail(f"{app_dir / (APP_MODULE + '.py')}: no such file (APP_DIR must hold the agent's app.py)")
    if not (args.wit / f"{WORLD}.wit").is_file():
        return fail(f"{args.wit}: edgehost's WIT directory not found (run build.py from an edgehost checkout)")
    tool = args.componentize_py or find_componentize_py()
    if tool is None:
        return fail("componentize-py not found: pip install componentize-py==0.25.1, or pass --componentize-py PATH")

    problem = check_guest(app_dir / f"{APP_MODULE}.py")
    if problem:
        return fail(problem)

    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    # No Rust backtrace: on failure, the app's own Python traceback is what matters.
    env = dict(os.environ, RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    started = time.monotonic()
    # componentize-py imports the app, and Python writes `__pycache__` next
    # to what it imports: build from copies, so neither the app's folder nor
    # the kit (perhaps a read-only checkout) is written to.
    with tempfile.TemporaryDirectory(prefix="edgehost-build-") as scratch:
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        app_copy = Path(scratch) / "app"
        kit_copy = Path(scratch) / "kit"
        shutil.copytree(app_dir, app_copy, ignore=skip)
        shutil.copytree(KIT_DIR / "edgehost_agent", kit_copy / "edgehost_agent", ignore=skip)
        command = [
            tool, "--quiet",
            "-d", str(args.wit), "-w", WORLD,
            "componentize", APP_MODULE,
            "-p", str(app_copy), "-p", str(kit_copy),
            "-o", str(output),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
        except OSError as e:
            return fail(f"cannot run {tool}: {e.strerror}")
    if result.returncode != 0:
        return fail(explain_failure(result.stdout, [app_dir, KIT_DIR]))
    seconds = time.monotonic() - started
    print(f"built {output} ({output.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")
    return 0


def find_componentize_py() -> "str | None":
    """componentize-py from this Python's environment, else from PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("componentize-py")


def explain_failure(output: str, python_path: "list[Path]") -> str:
    """Prints what componentize-py said, and returns the one-line summary.

    When the app raised while componentize-py imported it, componentize-py
    wraps the app's traceback in its own; only the app's is printed, with
    the search-path directories it calls `/0`, `/1` ... given their real names.
    """
    marker = "AssertionError: "
    if marker not in output:
        sys.stderr.write(output)
        return "componentize-py failed (its output is above)"
    traceback = output.split(marker, 1)[1].split("\n\nCaused by:", 1)[0].rstrip()
    for index, directory in enumerate(python_path):
        traceback = traceback.replace(f'File "/{index}/', f'File "{directory}/')
    sys.stderr.write(traceback + "\n")
    last_line = traceback.splitlines()[-1] if traceback else "unknown error"
    if "has no attribute 'Guest'" in last_line:
        last_line += " (end it with `Guest = export(YourAgent)`)"
    return f"{APP_MODULE}.py: {last_line}"


def check_guest(app: Path) -> "str | None":
    """The mistake the build cannot explain well: `Guest = MyAgent`.

    componentize-py makes the world's exports from `Guest` by calling it
    with no arguments, which an agent class (it takes `config`) refuses
    only when the agent first runs, as a TypeError that does not say why.
    `export(MyAgent)` is what makes the class a `Guest`.
    """
    try:
        tree = ast.parse(app.read_text(encoding="utf-8"), filename=str(app))
    except (OSError, SyntaxError, ValueError):
        return None  # the build reports it, with the real traceback
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "Guest" for t in node.targets)
            and isinstance(node.value, ast.Name)
            and node.value.id in classes
        ):
            name = node.value.id
            return (
                f"{app.name}:{node.lineno}: `Guest = {name}` hands componentize-py the class itself; "
                f"write `Guest = export({name})` (from edgehost_agent import export)"
            )
    return None


def fail(message: str) -> int:
    print(f"build.py: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
