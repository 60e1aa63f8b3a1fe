//===- moe-compile.cpp - Config in, shared library and header out ---------===//
//
// Part of the moe-mlir project.
//
// moe-compile CONFIG.json -o DIR [--emit=mlir|linalg|llvm|obj|ptx]
//             [--print-pipeline] [--march=CPU] [--emulate-gpu]
//             [--cpu-pipeline-options="vector-lanes=16 ..."]
//             [--disable-fusion=gate,gather,activation,combine]
//             [--sanitize=address,undefined,thread]
// moe-compile CONFIG.json --print-config   (CONFIG.json may be - for stdin)
//
// Every output is written to a temporary file and renamed into DIR only
// once the whole compilation succeeded, so a failure leaves DIR as it was.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/CABI.h"
#include "moe-mlir/Compiler/Config.h"
#include "moe-mlir/Compiler/LayerModule.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"
#include "moe-mlir/InitAllMoE.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"

#include <string>
#include <vector>

using namespace mlir;
namespace cl = llvm::cl;

// --help lists these alone; LLVM's own options still parse but stay hidden.
static cl::OptionCategory moeCompileCategory("moe-compile options");

static cl::opt<std::string> configPath(cl::Positional, cl::Required,
                                       cl::cat(moeCompileCategory),
                                       cl::desc("<config.json>"));
static cl::opt<std::string> outputDir("o", cl::cat(moeCompileCategory),
                                      cl::desc("Output directory"),
                                      cl::value_desc("dir"));
static cl::opt<bool> printConfig(
    "print-config", cl::cat(moeCompileCategory),
    cl::desc("Validate the config and print it with every default filled "
             "in, as JSON, instead of compiling (no -o)"));
enum class Stage { library, mlir, linalg, llvm, obj, ptx };
static cl::opt<Stage> emit(
    "emit", cl::cat(moeCompileCategory),
    cl::desc("Stop early and write that stage"), cl::init(Stage::library),
    cl::values(clEnumValN(Stage::mlir, "mlir", "<name>.mlir: the moe module"),
               clEnumValN(Stage::linalg, "linalg",
                          "<name>.linalg.mlir: after the linalg stage, with "
                          "each op's lowering config"),
               clEnumValN(Stage::llvm, "llvm", "<name>.ll: LLVM IR"),
               clEnumValN(Stage::obj, "obj", "<name>.o: an object file"),
               clEnumValN(Stage::ptx, "ptx", "<name>.ptx: for target cuda")));
static cl::opt<bool> printPipeline("print-pipeline",
                                   cl::cat(moeCompileCategory),
                                   cl::desc("Print the passes it runs"));
enum class Fusion { gate, gather, activation, combine };
static cl::list<Fusion> disabledFusions(
    "disable-fusion", cl::CommaSeparated, cl::cat(moeCompileCategory),
    cl::desc("Turn fusions off, for ablation (comma-separated)"),
    cl::values(
        clEnumValN(Fusion::gate, "gate", "score the whole [T, E] matrix"),
        clEnumValN(Fusion::gather, "gather", "copy each expert's rows out"),
        clEnumValN(Fusion::activation, "activation",
                   "store gate and up projections whole"),
        clEnumValN(Fusion::combine, "combine",
                   "store the [rows, H] expert output, then gather it")));
static cl::opt<std::string>
    march("march", cl::cat(moeCompileCategory),
          cl::desc("CPU the library is tuned for (clang -march)"),
          cl::init("native"));
static cl::opt<std::string> cpuPipelineOptions(
    "cpu-pipeline-options", cl::cat(moeCompileCategory),
    cl::desc("Options of moe-opt's -moe-cpu-pipeline, applied over the "
             "tiling chosen for -march, for tuning (e.g. "
             "\"vector-lanes=16\": AVX-512's tiles)"));
static cl::opt<bool> emulateGPU(
    "emulate-gpu", cl::cat(moeCompileCategory),
    cl::desc("Build the CUDA target's kernels for this CPU instead (each "
             "thread block's threads as loops): a host library for testing "
             "the kernels without a GPU; needs \"target\": \"cpu\""));

static cl::opt<bool> permuteFragments(
    "permute-mma-fragments", cl::cat(moeCompileCategory), cl::Hidden,
    cl::desc("Misplace two registers of the tensor-core kernels' A "
             "fragments, so that tests can show the emulation catches it"));

enum class Sanitizer { address, undefined, thread };
static cl::list<Sanitizer> sanitizers(
    "sanitize", cl::CommaSeparated, cl::cat(moeCompileCategory),
    cl::desc("Build the library with sanitizer checks, to test the program "
             "that links it (comma-separated)"),
    cl::values(
        clEnumValN(Sanitizer::address, "address",
                   "AddressSanitizer, in the kernels and the C wrapper"),
        clEnumValN(Sanitizer::undefined, "undefined",
                   "UndefinedBehaviorSanitizer, in the C wrapper"),
        clEnumValN(Sanitizer::thread, "thread",
                   "ThreadSanitizer, in the kernels and the C wrapper")));

static std::string sanitizerName(Sanitizer sanitizer) {
  switch (sanitizer) {
  case Sanitizer::address:
    return "address";
  case Sanitizer::undefined:
    return "undefined";
  case Sanitizer::thread:
    return "thread";
  }
  llvm_unreachable("unknown sanitizer");
}

/// clang drives the final object and link steps; MOE_CLANG overrides the
/// one found at build time.
static std::string clangPath() {
  if (const char *fromEnv = std::getenv("MOE_CLANG"))
    return fromEnv;
  return MOE_CLANG_PATH;
}

/// The CUDA toolkit's root: the first of $CUDA_HOME, $CUDA_PATH,
/// /usr/local/cuda and the directory above the ptxas on PATH that has
/// ptxas, fatbinary and libdevice.
static std::optional<std::string> findCUDAToolkit() {
  std::vector<std::string> candidates;
  for (const char *variable : {"CUDA_HOME", "CUDA_PATH"})
    if (const char *value = std::getenv(variable))
      candidates.push_back(value);
  candidates.push_back("/usr/local/cuda");
  if (llvm::ErrorOr<std::string> ptxas = llvm::sys::findProgramByName("ptxas"))
    candidates.push_back(llvm::sys::path::parent_path(
                             llvm::sys::path::parent_path(*ptxas))
                             .str());
  for (const std::string &root : candidates) {
    bool complete = true;
    for (const char *file :
         {"bin/ptxas", "bin/fatbinary", "nvvm/libdevice/libdevice.10.bc"}) {
      llvm::SmallString<256> path(root);
      llvm::sys::path::append(path, file);
      complete &= llvm::sys::fs::exists(path);
    }
    if (complete)
      return root;
  }
  return std::nullopt;
}

/// The CUDA runtime every cuda library links: $MOE_CUDA_RUNTIME, else
/// ../lib/libMoECUDARuntime.a beside this executable.
static std::string cudaRuntimePath(const char *argv0) {
  if (const char *fromEnv = std::getenv("MOE_CUDA_RUNTIME"))
    return fromEnv;
  std::string executable =
      llvm::sys::fs::getMainExecutable(argv0, (void *)&cudaRuntimePath);
  llvm::SmallString<256> path(llvm::sys::path::parent_path(
      llvm::sys::path::parent_path(executable)));
  llvm::sys::path::append(path, "lib", "libMoECUDARuntime.a");
  return std::string(path);
}

static int fail(const llvm::Twine &message) {
  llvm::errs() << "moe-compile: error: " << message << "\n";
  return 1;
}

namespace {
/// A scratch directory removed, with what is in it, when it goes out of
/// scope.
class ScratchDir {
public:
  std::error_code create() {
    return llvm::sys::fs::createUniqueDirectory("moe-compile", path);
  }
  ~ScratchDir() {
    if (!path.empty())
      llvm::sys::fs::remove_directories(path);
  }
  std::string file(llvm::StringRef name) const {
    llvm::SmallString<256> result(path);
    llvm::sys::path::append(result, name);
    return std::string(result);
  }

private:
  llvm::SmallString<256> path;
};
} // namespace

static bool writeFile(const std::string &path, llvm::StringRef contents) {
  std::error_code error;
  llvm::raw_fd_ostream os(path, error);
  if (error)
    return false;
  os << contents;
  return !os.has_error();
}

static int runClang(llvm::ArrayRef<std::string> args) {
  std::string clang = clangPath();
  std::vector<llvm::StringRef> argv = {clang};
  for (const std::string &arg : args)
    argv.push_back(arg);
  std::string message;
  int status = llvm::sys::ExecuteAndWait(clang, argv, std::nullopt, {}, 0, 0,
                                         &message);
  if (status != 0)
    return fail("'" + clang + "' failed" +
                (message.empty() ? "" : ": " + message));
  return 0;
}

/// The target of code built with -march=`march`: the features the kernels'
/// tiling depends on, from the macros clang predefines for it (the host's
/// own for "native").
static std::optional<moe::CPUTargetAttr>
probeCPUTarget(MLIRContext &context, const ScratchDir &scratch) {
  std::string macros = scratch.file("cpu-macros.h");
  if (runClang({"-march=" + march, "-E", "-dM", "-x", "c", "/dev/null", "-o",
                macros}))
    return std::nullopt;
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> text =
      llvm::MemoryBuffer::getFile(macros);
  if (!text)
    return std::nullopt;
  static constexpr std::pair<const char *, const char *> kFeatures[] = {
      {"avx2", "__AVX2__"},           {"fma", "__FMA__"},
      {"avx512f", "__AVX512F__"},     {"avx512bw", "__AVX512BW__"},
      {"avx512vnni", "__AVX512VNNI__"}, {"avx512bf16", "__AVX512BF16__"}};
  SmallVector<Attribute> features;
  for (auto [name, macro] : kFeatures)
    if ((*text)->getBuffer().contains("#define " + std::string(macro) + " 1"))
      features.push_back(StringAttr::get(&context, name));
  return moe::CPUTargetAttr::get(&context,
                                 ArrayAttr::get(&context, features));
}

/// Moves each scratch file to its final name in the output directory.
static int publish(const ScratchDir &scratch,
                   llvm::ArrayRef<std::string> names) {
  if (std::error_code error = llvm::sys::fs::create_directories(outputDir))
    return fail("cannot create '" + outputDir + "': " + error.message());
  for (const std::string &name : names) {
    llvm::SmallString<256> target(outputDir.getValue());
    llvm::sys::path::append(target, name);
    std::string staged = target.str().str() + ".tmp";
    // Copy next to the target first: a rename is atomic only within one
    // file system.
    if (std::error_code error =
            llvm::sys::fs::copy_file(scratch.file(name), staged))
      return fail("cannot write '" + staged + "': " + error.message());
    if (std::error_code error = llvm::sys::fs::rename(staged, target)) {
      llvm::sys::fs::remove(staged);
      return fail("cannot write '" + target + "': " + error.message());
    }
  }
  return 0;
}

/// Writes `module` as `file` and publishes it.
static int publishModule(const ScratchDir &scratch, ModuleOp module,
                         const std::string &file) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  if (!writeFile(scratch.file(file), text))
    return fail("cannot write '" + file + "'");
  return publish(scratch, {file});
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(moeCompileCategory);
  cl::ParseCommandLineOptions(argc, argv,
                              "moe-compile: MoE layer config to a shared "
                              "library with a C ABI\n");

  llvm::Expected<moe::LayerConfig> config = moe::readLayerConfig(configPath);
  if (!config)
    return fail(llvm::toString(config.takeError()));
  // The normalized config is what every frontend validates against, so
  // that the rules live here alone.
  if (printConfig) {
    if (!outputDir.empty())
      return fail("--print-config writes no files: drop -o");
    if (emit.getNumOccurrences() || printPipeline || emulateGPU ||
        !disabledFusions.empty() || march.getNumOccurrences() ||
        !cpuPipelineOptions.empty() || !sanitizers.empty())
      return fail("--print-config takes no compilation option");
    llvm::outs() << config->toJSON() << "\n";
    return 0;
  }
  if (outputDir.empty())
    return fail("-o DIR is required: the directory to write into");
  const std::string &name = config->name;
  bool cuda = config->isCUDA();
  if (emit == Stage::ptx && !cuda)
    return fail("--emit=ptx needs \"target\": \"cuda\"");
  if (emulateGPU && cuda)
    return fail("--emulate-gpu builds a library for this CPU: it needs "
                "\"target\": \"cpu\"");
  if ((cuda || emulateGPU) && !disabledFusions.empty())
    return fail("--disable-fusion is for the CPU kernels, not the GPU's");
  if ((cuda || emulateGPU) && !cpuPipelineOptions.empty())
    return fail("--cpu-pipeline-options is for the CPU kernels, not the "
                "GPU's");
  if (cuda && !sanitizers.empty())
    return fail("--sanitize instruments CPU code, and a cuda library's "
                "kernels run on the GPU: it needs \"target\": \"cpu\" (or "
                "--emulate-gpu)");
  std::string toolkit;
  if (cuda && emit != Stage::mlir) {
    std::optional<std::string> found = findCUDAToolkit();
    if (!found)
      return fail("'" + configPath +
                  "': \"target\": \"cuda\" needs the CUDA toolkit "
                  "(bin/ptxas, bin/fatbinary, nvvm/libdevice): none in "
                  "$CUDA_HOME, $CUDA_PATH, /usr/local/cuda or above the "
                  "ptxas on PATH");
    toolkit = *found;
  }

  DialectRegistry registry;
  moe::registerAllDialects(registry);
  moe::registerAllPasses();
  MLIRContext context(registry);
  context.disableMultithreading();

  OwningOpRef<ModuleOp> module = moe::buildLayerModule(context, *config);
  if (failed(verify(*module)))
    return fail("the module built for '" + configPath + "' does not verify");

  ScratchDir scratch;
  if (std::error_code error = scratch.create())
    return fail("cannot create a scratch directory: " + error.message());

  // The CPU the kernels are tiled for (moe-configure-cpu reads it).
  if (!cuda && !emulateGPU) {
    std::optional<moe::CPUTargetAttr> target = probeCPUTarget(context, scratch);
    if (!target)
      return fail("cannot tell what -march=" + march + " enables");
    (*module)->setAttr(moe::kTargetAttrName, *target);
  }

  if (emit == Stage::mlir)
    return publishModule(scratch, *module, name + ".mlir");

  moe::CPUPipelineOptions pipelineOptions;
  for (Fusion fusion : disabledFusions) {
    switch (fusion) {
    case Fusion::gate:
      pipelineOptions.fuseGate = false;
      break;
    case Fusion::gather:
      pipelineOptions.fuseGather = false;
      break;
    case Fusion::activation:
      pipelineOptions.fuseActivation = false;
      break;
    case Fusion::combine:
      pipelineOptions.fuseCombine = false;
      break;
    }
  }
  if (!cuda && !emulateGPU) {
    // A vector-lanes given here overrides the target's.
    std::string error;
    llvm::raw_string_ostream errorStream(error);
    if (failed(pipelineOptions.parseFromString(cpuPipelineOptions,
                                               errorStream)))
      return fail("bad --cpu-pipeline-options '" + cpuPipelineOptions + "'" +
                  (error.empty() ? "" : ": " + llvm::StringRef(error).trim()));
  }
  PassManager pm(&context);
  if (cuda || emulateGPU) {
    moe::GPUPipelineOptions gpuOptions;
    gpuOptions.emulate = emulateGPU;
    gpuOptions.toolkit = toolkit;
    gpuOptions.binary = emit == Stage::ptx ? "ptx" : "fatbin";
    gpuOptions.chips = config->gpuArch;
    gpuOptions.permuteFragments = permuteFragments;
    if (emit == Stage::linalg)
      moe::buildGPULinalgStage(pm, gpuOptions);
    else
      moe::buildGPUPipeline(pm, gpuOptions);
  } else if (emit == Stage::linalg) {
    moe::buildCPULinalgStage(pm, pipelineOptions);
  } else {
    moe::buildCPUPipeline(pm, pipelineOptions);
  }
  if (printPipeline) {
    pm.printAsTextualPipeline(llvm::outs());
    llvm::outs() << "\n";
  }
  if (failed(pm.run(*module)))
    return fail("lowering '" + configPath + "' failed");
  if (emit == Stage::linalg)
    return publishModule(scratch, *module, name + ".linalg.mlir");
  if (emit == Stage::ptx) {
    std::string ptx = moe::newestPTX(*module);
    if (ptx.empty())
      return fail("the GPU pipeline left no PTX");
    if (!writeFile(scratch.file(name + ".ptx"), ptx))
      return fail("cannot write the PTX");
    return publish(scratch, {name + ".ptx"});
  }

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, name);
  if (!llvmModule)
    return fail("translation to LLVM IR failed");
  llvmModule->setTargetTriple(llvm::Triple(llvm::sys::getDefaultTargetTriple()));
  // clang instruments only the functions that carry the sanitizer's
  // attribute, which IR from MLIR does not.
  for (llvm::Function &function : *llvmModule) {
    if (function.isDeclaration())
      continue;
    for (Sanitizer sanitizer : sanitizers) {
      if (sanitizer == Sanitizer::address)
        function.addFnAttr(llvm::Attribute::SanitizeAddress);
      if (sanitizer == Sanitizer::thread)
        function.addFnAttr(llvm::Attribute::SanitizeThread);
    }
  }
  std::string ir;
  llvm::raw_string_ostream irStream(ir);
  llvmModule->print(irStream, nullptr);
  std::string kernelFile = scratch.file(name + ".ll");
  if (!writeFile(kernelFile, ir))
    return fail("cannot write the LLVM IR");
  if (emit == Stage::llvm)
    return publish(scratch, {name + ".ll"});

  // An emulated GPU library is a test build: its compile time matters more
  // than its speed, and -O3's unrolling of its lane loops costs the most.
  std::vector<std::string> codegen = {emulateGPU ? "-O1" : "-O3",
                                      "-march=" + march, "-fPIC"};
  if (!sanitizers.empty()) {
    std::string list;
    for (Sanitizer sanitizer : sanitizers)
      list += (list.empty() ? "" : ",") + sanitizerName(sanitizer);
    // The host process loads the sanitizer's runtime; the library links
    // the shared one so that -z defs finds its symbols.
    codegen.insert(codegen.end(), {"-fsanitize=" + list, "-shared-libsan",
                                   "-fno-omit-frame-pointer", "-g"});
  }
  if (emit == Stage::obj) {
    std::vector<std::string> args = codegen;
    args.insert(args.end(), {"-c", kernelFile, "-o", scratch.file(name + ".o")});
    if (int status = runClang(args))
      return status;
    return publish(scratch, {name + ".o"});
  }

  std::string header = name + ".h";
  std::string wrapperFile = scratch.file(name + "_abi.c");
  if (!writeFile(scratch.file(header), moe::emitHeader(*config)) ||
      !writeFile(wrapperFile, moe::emitWrapperSource(*config)))
    return fail("cannot write the C ABI sources");
  std::string library = "lib" + name + ".so";
  std::vector<std::string> args = codegen;
  args.insert(args.end(),
              {"-shared", "-Wl,-z,defs", "-Wno-override-module",
               // LLVM's code may call builtins that Debian's libgcc lacks
               // (__truncsfbf2, say); compiler-rt has them all.
               "-rtlib=compiler-rt", "-I", scratch.file(""), kernelFile,
               wrapperFile, "-o", scratch.file(library), "-lm"});
  // The CUDA runtime loads the driver itself: no link-time dependency on it.
  if (cuda)
    args.insert(args.end(), {cudaRuntimePath(argv[0]), "-ldl", "-lpthread"});
  else
    args.push_back("-fopenmp");
  if (int status = runClang(args))
    return status;
  return publish(scratch, {library, header});
}
