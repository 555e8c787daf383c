"""Motor's type stubs are current, true to the runtime, and useful under ``mypy --strict``.

Each check runs in a subprocess (about 15 s in all on the 2-core machine):

* ``tools/stubgen.py --check``: the committed ``motor/*.pyi`` (``motor/core.pyi`` and
  the framework modules') are what the generator writes from the runtime classes and
  PyMongo's annotations now;
* ``mypy.stubtest``: the stubs match the runtime (every name, every signature), and
  ``motor/core.pyi`` declares every public name ``motor.core`` defines;
* ``mypy --strict`` on ``test/typing/``: the good samples pass, and ``bad_sample.py``
  fails on exactly the lines marked ``# E: <error code>``, with those codes.

mypy checks the samples from a directory outside the repository, so it finds Motor the
way a user's project does, through the installed package: ``test/run.sh`` installs it in
setuptools' strict editable mode, whose tree of links mypy follows (the default mode's
import hook is invisible to type checkers).
"""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import mypy  # noqa: F401
except ImportError as exc:  # the checks must run, not skip
    raise ImportError("test_typing.py needs mypy and ruff: install Motor's 'lint' extra") from exc

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "test" / "typing"
GOOD_SAMPLES = ("asyncio_sample.py", "tornado_sample.py", "core_sample.py")
BAD_SAMPLE = "bad_sample.py"
FRAMEWORK_MODULES = ("motor.motor_asyncio", "motor.motor_tornado")
# The modules with a generated stub: the framework-neutral classes' and the frameworks'.
STUB_MODULES = ("motor.core", *FRAMEWORK_MODULES)

# "path:line: error: message  [code]"
_ERROR = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[\w-]+)\]$"
)
_MARK = re.compile(r"#\s*E:\s*(?P<code>[\w-]+)\s*$")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=100, check=False
    )


def test_stubs_are_current() -> None:
    assert shutil.which("ruff", path=str(Path(sys.executable).parent)), (
        "the generator formats with ruff: install Motor's 'lint' extra"
    )
    done = _run([sys.executable, "tools/stubgen.py", "--check"], ROOT)
    assert done.returncode == 0, (
        "the stubs are stale; run: python tools/stubgen.py\n" + done.stdout + done.stderr
    )


def test_stubs_match_the_runtime() -> None:
    command = [
        sys.executable,
        "-m",
        "mypy.stubtest",
        "--mypy-config-file",
        "pyproject.toml",
        "--strict-type-check-only",
        *STUB_MODULES,
    ]
    if sys.version_info >= (3, 12):
        # What inspect.markcoroutinefunction marks (see the file).
        command += ["--allowlist", str(ROOT / "test" / "stubtest-allowlist-py312.txt")]
    done = _run(command, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def _stub_names(module: str) -> set[str]:
    """The names bound at the top level of ``module``'s stub (imports aside)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".pyi")).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_core_stub_declares_every_public_name() -> None:
    """With ``motor/core.pyi``, type checkers see nothing of ``motor.core`` but the stub:
    it declares ``__all__`` (which stubtest checks) and every other public name that
    motor.core's own source defines (``Admission``, ``bind_arguments``, ...), as the
    runtime has them, and the private names Motor's other modules import from it."""
    import motor.core

    runtime = {
        name
        for name, value in vars(motor.core).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", None) == "motor.core"
    }
    runtime |= set(motor.core.__all__)
    assert {"AgnosticCollection", "AgnosticCursor", "Admission", "bind_arguments"} <= runtime
    declared = _stub_names("motor.core")
    assert sorted(runtime - declared) == []
    assert {"_COMPLETED", "_check_first_argument", "_SessionFuture"} <= declared


def test_framework_stubs_derive_from_motor_core() -> None:
    """Each framework class of the stubs derives from motor.core's stub class (not from the
    module defining it at run time, which type checkers read without a stub): code
    annotated with ``motor.core.AgnosticCursor`` takes an ``AsyncIOMotorCursor``."""
    import motor.core

    for module in FRAMEWORK_MODULES:
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".pyi")).read_text())
        imported = {
            alias.name: node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for name in motor.core.__all__:
            if name.startswith("Agnostic") and name in imported:
                assert imported[name] == "motor.core", (module, name)
        assert imported["AgnosticCursor"] == "motor.core"


@pytest.mark.parametrize("module", FRAMEWORK_MODULES)
def test_session_future_awaits_to_the_framework_session(module: str) -> None:
    """In the stubs, start_session()'s _SessionFuture has its Coroutine of the framework's
    session as first base: pyright takes what ``await`` gives from the first Awaitable
    base, not from the class's own ``__await__``, and the runtime class it also derives
    from is a Future of the framework-neutral AgnosticClientSession."""
    stub = ROOT / (module.replace(".", "/") + ".pyi")
    tree = ast.parse(stub.read_text())
    (helper,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_SessionFuture"]
    session = "AsyncIOMotorClientSession" if module.endswith("asyncio") else "MotorClientSession"
    assert [ast.unparse(base) for base in helper.bases] == [
        f"Coroutine[Any, Any, {session}]",
        "_core_SessionFuture",
    ]


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """``mypy --strict`` on every sample, run once from outside the repository: the
    errors per sample file name, as (line, error code)."""
    outside = tmp_path_factory.mktemp("mypy-outside-the-repo")
    samples = [str(SAMPLES / name) for name in (*GOOD_SAMPLES, BAD_SAMPLE)]
    done = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(outside / "cache"),
            "--no-pretty",
            "--show-error-codes",
            "--no-error-summary",
            *samples,
        ],
        outside,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "Cannot find implementation or library stub" not in done.stdout, (
        "mypy does not see the installed motor package (install it as test/run.sh does: "
        "pip install --config-settings editable_mode=strict --editable .):\n" + done.stdout
    )
    errors: dict[str, set[tuple[int, str]]] = {}
    for line in done.stdout.splitlines():
        match = _ERROR.match(line)
        if match is None:
            assert ": error:" not in line, f"unparsed mypy error: {line}"
            continue
        name = Path(match["path"]).name
        errors.setdefault(name, set()).add((int(match["line"]), match["code"]))
    return errors


@pytest.mark.parametrize("sample", GOOD_SAMPLES)
def test_good_sample_passes(sample: str, mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors.get(sample, set()) == set()


def test_bad_sample_fails_on_the_marked_lines(
    mypy_errors: dict[str, set[tuple[int, str]]],
) -> None:
    expected = set()
    lines = (SAMPLES / BAD_SAMPLE).read_text(encoding="utf-8").splitlines()
    for number, text in enumerate(lines, start=1):
        match = _MARK.search(text)
        if match is not None:
            expected.add((number, match["code"]))
    assert len(expected) >= 20
    actual = mypy_errors.get(BAD_SAMPLE, set())
    assert sorted(actual - expected) == [], "errors on lines not marked # E:"
    assert sorted(expected - actual) == [], "marked lines that mypy accepted"
