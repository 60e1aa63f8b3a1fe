"""Lets the suite import the `moe_mlir` package from this checkout whether or
not it is installed, and makes sibling test modules importable."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE.parents[1] / "python_frontend"

for path in (str(FRONTEND), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)
