"""Lets the suite import the `moe_mlir` package from this checkout whether or
not it is installed, and makes sibling test modules importable; the
`libraries` fixture compiles configs."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE.parents[1] / "python_frontend"

for path in (str(FRONTEND), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402

from moe_mlir.abi import Library, compile_config  # noqa: E402


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """Compiles each config once per module, on first use."""
    cache = {}

    def get(config):
        name = config["name"]
        if name not in cache:
            so = compile_config(config, tmp_path_factory.mktemp(name))
            cache[name] = Library(so, name, config)
        return cache[name]

    return get
