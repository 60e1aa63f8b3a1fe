"""Where the CUDA tools are: the toolkit moe-compile uses for "target":
"cuda" (its search order), and cuobjdump."""

import os
import shutil
import sysconfig
from pathlib import Path

TOOLKIT_FILES = ("bin/ptxas", "bin/fatbinary", "nvvm/libdevice/libdevice.10.bc")


def cuda_toolkit():
    """The toolkit's root, or None: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda,
    then the directory above the ptxas on PATH."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  "/usr/local/cuda"]
    ptxas = shutil.which("ptxas")
    if ptxas:
        candidates.append(str(Path(ptxas).resolve().parents[1]))
    for root in filter(None, candidates):
        if all((Path(root) / f).exists() for f in TOOLKIT_FILES):
            return Path(root)
    return None


NO_TOOLKIT = ("no CUDA toolkit (bin/ptxas, bin/fatbinary, nvvm/libdevice) in "
              "$CUDA_HOME, $CUDA_PATH, /usr/local/cuda or above the ptxas on PATH")


def cuobjdump():
    """cuobjdump from PATH, the toolkit, or the nvidia-cuda-cuobjdump wheel
    (scripts/setup installs it where the toolkit lacks it); None if none."""
    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    toolkit = cuda_toolkit()
    places = [toolkit / "bin" / "cuobjdump"] if toolkit else []
    purelib = Path(sysconfig.get_paths()["purelib"])
    places += sorted(purelib.glob("nvidia/cu*/bin/cuobjdump"), reverse=True)
    return next((p for p in places if p.is_file()), None)
