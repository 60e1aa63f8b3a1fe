"""llama.cpp's ggml as a peer in bench/run: built from the llama-cpp-python
sdist on PyPI (the ggml it vendors), its MoE block (bench/ggml_moe.c,
llama.cpp's build_moe_ffn with ggml_mul_mat_id) timed at the same shapes.

The sdist and the build are kept in build-ggml/ at the repository's root, so
that a second run builds nothing.
"""

import json
import os
import subprocess
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.36"
TYPES = ("bf16", "q8_0", "q4_0", "q4_K")
WORK = ROOT / "build-ggml"


def _sdist():
    """The llama-cpp-python sdist, downloaded once."""
    path = WORK / f"llama_cpp_python-{VERSION}.tar.gz"
    if path.exists():
        return path
    WORK.mkdir(exist_ok=True)
    index = "https://pypi.org/pypi/llama-cpp-python/json"
    with urllib.request.urlopen(index, timeout=60) as response:
        project = json.load(response)
    files = project.get("releases", {}).get(VERSION) or (
        project["urls"] if project["info"]["version"] == VERSION else [])
    sdist = next((f for f in files if f["packagetype"] == "sdist"), None)
    if sdist is None:
        raise OSError(f"PyPI lists no llama-cpp-python {VERSION} sdist")
    url = urllib.parse.urljoin(index, sdist["url"])
    partial = path.with_suffix(".partial")
    urllib.request.urlretrieve(url, partial)
    partial.rename(path)
    return path


def tool():
    """The ggml_moe executable, built against the vendored ggml (static,
    -march=native, OpenMP)."""
    exe = WORK / "ggml_moe"
    source = ROOT / "bench" / "ggml_moe.c"
    if exe.exists() and exe.stat().st_mtime >= source.stat().st_mtime:
        return exe
    top = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/ggml"
    ggml = WORK / top
    if not (ggml / "CMakeLists.txt").exists():
        with tarfile.open(_sdist()) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(top + "/")]
            archive.extractall(WORK, members=members, filter="data")
    # The sdist leaves out ggml.pc.in, which a standalone ggml build
    # configures (a pkg-config file, unused here).
    (ggml / "ggml.pc.in").touch()
    build = WORK / "build"
    subprocess.run(["cmake", "-G", "Ninja", "-S", str(ggml), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
                    "-DGGML_NATIVE=ON", "-DGGML_OPENMP=ON", "-DGGML_BUILD_TESTS=OFF",
                    "-DGGML_BUILD_EXAMPLES=OFF", "-DCMAKE_C_COMPILER=clang-22",
                    "-DCMAKE_CXX_COMPILER=clang++-22"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", str(build), "ggml"], check=True, stdout=subprocess.DEVNULL)
    libs = [str(p) for name in ("libggml.a", "libggml-cpu.a", "libggml-base.a")
            for p in build.rglob(name)]
    subprocess.run(["clang++-22", "-O2", "-x", "c", str(source), "-x", "none",
                    f"-I{ggml / 'include'}", *libs, "-fopenmp", "-lm", "-lpthread",
                    "-o", str(exe)], check=True)
    return exe


def time_block(shape, T, type_name, threads, reps):
    """(median ms per call, expert weight bytes) of ggml's block."""
    _, H, F, E, k, _, _ = shape
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(tool()), str(H), str(F), str(E), str(k), str(T), type_name,
                          str(threads), str(reps)], check=True, capture_output=True,
                         text=True, env=env).stdout
    result = json.loads(out)
    return result["ms"] / 1e3, result["expert_bytes"]
