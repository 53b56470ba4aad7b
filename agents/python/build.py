#!/usr/bin/env python3
"""Builds a Python edgehost agent into a WebAssembly component.

    python3 build.py APP_DIR -o OUT.wasm [--componentize-py PATH]

APP_DIR holds the agent's `app.py` (the module that ends with
`Guest = export(MyAgent)`) and any modules of its own. This runs
componentize-py against edgehost's `agent` world, with the kit
(`edgehost_agent`, next to this script) on the Python path. Works from any
directory; needs nothing but componentize-py (`pip install componentize-py`).

The policy kit's `plugins/python/build.py` runs this same builder with its
own `Kit`: the `policy` world and the `edgehost_policy` package.
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The app module componentize-py loads; it must define the kit's exports.
APP_MODULE = "app"


@dataclass(frozen=True)
class Kit:
    """What one kind of component is built from."""

    #: What the component is, for messages ("agent", "policy plugin").
    what: str
    #: edgehost's WIT directory holding the world.
    wit_dir: Path
    #: The world componentize-py builds.
    world: str
    #: The kit's Python package: its directory, copied onto the path.
    package: Path
    #: Names the app module must define, made by the kit's `export`.
    exports: "tuple[str, ...]"
    #: The line that defines them, with `{name}` for the user's class.
    export_line: str


#: Agents: `Guest = export(MyAgent)`, world `agent`.
AGENT_KIT = Kit(
    what="agent",
    wit_dir=HERE.parent.parent / "wit" / "agent",
    world="agent",
    package=HERE / "edgehost_agent",
    exports=("Guest",),
    export_line="Guest = export({name})",
)


def main(kit: Kit = AGENT_KIT) -> int:
    parser = argparse.ArgumentParser(description=f"Build a Python edgehost {kit.what} component.")
    parser.add_argument("app_dir", type=Path, metavar="APP_DIR", help="directory holding app.py")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wasm")
    parser.add_argument(
        "--componentize-py",
        metavar="PATH",
        help="the componentize-py to run (default: the one next to this Python, then PATH)",
    )
    parser.add_argument("--wit", type=Path, default=kit.wit_dir, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()

    app_dir = args.app_dir.resolve()
    if not (app_dir / f"{APP_MODULE}.py").is_file():
        return fail(f"{app_dir / (APP_MODULE + '.py')}: no such file (APP_DIR must hold the {kit.what}'s app.py)")
    if not (args.wit / f"{kit.world}.wit").is_file():
        return fail(f"{args.wit}: edgehost's WIT directory not found (run build.py from an edgehost checkout)")
    tool = args.componentize_py or find_componentize_py()
    if tool is None:
        return fail("componentize-py not found: pip install componentize-py==0.25.1, or pass --componentize-py PATH")

    problem = check_exports(app_dir / f"{APP_MODULE}.py", kit)
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
        shutil.copytree(kit.package, kit_copy / kit.package.name, ignore=skip)
        command = [
            tool, "--quiet",
            "-d", str(args.wit), "-w", kit.world,
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
        return fail(explain_failure(result.stdout, [app_dir, kit.package.parent], kit))
    seconds = time.monotonic() - started
    print(f"built {output} ({output.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")
    return 0


def find_componentize_py() -> "str | None":
    """componentize-py from this Python's environment, else from PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("componentize-py")


def explain_failure(output: str, python_path: "list[Path]", kit: Kit) -> str:
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
    if any(f"has no attribute '{name}'" in last_line for name in kit.exports):
        last_line += f" (end it with `{kit.export_line.format(name='Your' + kit.what.split()[0].title())}`)"
    return f"{APP_MODULE}.py: {last_line}"


def check_exports(app: Path, kit: Kit) -> "str | None":
    """The mistake the build cannot explain well: `Guest = MyAgent`.

    componentize-py makes the world's exports from the names in `kit.exports`
    by calling them with no arguments and then calling their methods with
    WIT records. A user's class given directly fails only when the component
    first runs, as a TypeError that does not say why; the kit's `export`
    is what makes those names from the class.
    """
    try:
        tree = ast.parse(app.read_text(encoding="utf-8"), filename=str(app))
    except (OSError, SyntaxError, ValueError):
        return None  # the build reports it, with the real traceback
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        targets = [t for target in node.targets for t in _names(target)]
        values = _names(node.value)
        for target, value in zip(targets, values):
            if target in kit.exports and value in classes:
                fix = kit.export_line.format(name=value)
                return (
                    f"{app.name}:{node.lineno}: `{target} = {value}` hands componentize-py the class itself; "
                    f"write `{fix}` (from {kit.package.name} import export)"
                )
    return None


def _names(node: ast.AST) -> "list[str | None]":
    """The names of a target or value: `A` or `A, B`, None for anything else."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Tuple):
        return [e.id if isinstance(e, ast.Name) else None for e in node.elts]
    return [None]


def fail(message: str) -> int:
    print(f"build.py: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
