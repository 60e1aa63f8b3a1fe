"""Runs the tests against this checkout's package (installed or not), with a
per-session library cache so they never touch the user's."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FRONTEND = HERE.parent
REPO = FRONTEND.parent
for path in (str(FRONTEND), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session", autouse=True)
def _library_cache(tmp_path_factory):
    old = os.environ.get("MOE_MLIR_CACHE")
    os.environ["MOE_MLIR_CACHE"] = str(tmp_path_factory.mktemp("moe_mlir_cache"))
    yield
    if old is None:
        os.environ.pop("MOE_MLIR_CACHE", None)
    else:
        os.environ["MOE_MLIR_CACHE"] = old


def tool(name):
    """A built tool of this checkout; MOE_COMPILE points at moe-compile and
    moe-opt sits beside it."""
    compile_path = Path(os.environ.get("MOE_COMPILE", REPO / "build" / "bin" / "moe-compile"))
    path = compile_path if name == "moe-compile" else compile_path.with_name(name)
    if not path.is_file():
        pytest.skip(f"{name} is not built ({path})")
    return path
