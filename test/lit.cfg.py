# The moe-mlir lit suite: FileCheck tests of the dialect, its passes and the
# tools, run against the build named in lit.site.cfg.py.
import os
import shutil

import lit.formats

config.name = "moe-mlir"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "Inputs", "CMakeLists.txt"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")

config.environment["FILECHECK_OPTS"] = "--enable-var-scope"
config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%moe_obj_root", config.moe_obj_root))

path = [os.path.join(config.moe_obj_root, "bin"), config.llvm_tools_dir]

# mlir-runner's C runtime (vector.print), for tests that run lowered code.
runner_utils = os.path.join(os.path.dirname(config.llvm_tools_dir), "lib",
                            "libmlir_c_runner_utils.so")
if os.path.exists(runner_utils):
    config.available_features.add("mlir-runner")
    config.substitutions.append(("%mlir_c_runner_utils", runner_utils))
config.environment["PATH"] = os.pathsep.join(path + [config.environment["PATH"]])

# The CUDA toolkit moe-compile uses for "target": "cuda" (its search order):
# tests that assemble kernels need it, the rest run anywhere.
def cuda_toolkit():
    candidates = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")]
    candidates.append("/usr/local/cuda")
    ptxas = shutil.which("ptxas")
    if ptxas:
        candidates.append(os.path.dirname(os.path.dirname(ptxas)))
    needed = ("bin/ptxas", "bin/fatbinary", "nvvm/libdevice/libdevice.10.bc")
    for root in filter(None, candidates):
        if all(os.path.exists(os.path.join(root, f)) for f in needed):
            return root
    return None


toolkit = cuda_toolkit()
if toolkit:
    config.available_features.add("cuda-toolkit")
    config.substitutions.append(("%cuda_toolkit", toolkit))
