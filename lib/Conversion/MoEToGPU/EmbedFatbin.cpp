//===- EmbedFatbin.cpp - One fat binary for every NVVM target -------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUEMBEDFATBIN
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

/// Where host objects keep fat binaries (nvcc puts them there too), which is
/// where `cuobjdump` looks for them.
static constexpr const char *kFatbinSection = ".nv_fatbin";

namespace {
/// A scratch directory, removed with its files when it goes.
struct ScratchFiles {
  llvm::SmallString<128> directory;
  ~ScratchFiles() {
    if (!directory.empty())
      llvm::sys::fs::remove_directories(directory);
  }
  std::string path(const llvm::Twine &name) const {
    llvm::SmallString<128> result(directory);
    llvm::sys::path::append(result, name);
    return std::string(result);
  }
};
} // namespace

/// Runs `tool` with `args`; on failure, what it printed.
static LogicalResult runTool(Operation *op, const std::string &tool,
                             ArrayRef<std::string> args,
                             const ScratchFiles &scratch) {
  std::vector<StringRef> argv = {tool};
  for (const std::string &arg : args)
    argv.push_back(arg);
  std::string log = scratch.path("tool.log");
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log),
                                          StringRef(log)};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(tool, argv, std::nullopt, redirects,
                                         0, 0, &message);
  if (status == 0)
    return success();
  std::string output;
  if (auto text = llvm::MemoryBuffer::getFile(log))
    output = (*text)->getBuffer().str();
  return op->emitError() << "'" << tool << "' failed"
                         << (message.empty() ? "" : ": " + message) << "\n"
                         << output;
}

/// The number of `sm_90a`, for ordering chips: 90.
static int chipNumber(StringRef chip) {
  int number = 0;
  chip.drop_front(3).take_while(llvm::isDigit).getAsInteger(10, number);
  return number;
}

namespace {
struct MoEGPUEmbedFatbinPass
    : moe::impl::MoEGPUEmbedFatbinBase<MoEGPUEmbedFatbinPass> {
  using Base::Base;

  /// `<toolkit>/bin/<name>`, or `name` on PATH without a toolkit.
  std::string tool(StringRef name) const {
    if (toolkit.empty()) {
      llvm::ErrorOr<std::string> found = llvm::sys::findProgramByName(name);
      return found ? *found : name.str();
    }
    llvm::SmallString<128> path(toolkit.getValue());
    llvm::sys::path::append(path, "bin", name);
    return std::string(path);
  }

  LogicalResult embed(gpu::BinaryOp binary, const ScratchFiles &scratch) {
    std::vector<std::string> images;
    NVVM::NVVMTargetAttr newest;
    std::string newestPTX;
    for (auto [i, attr] : llvm::enumerate(binary.getObjects())) {
      auto object = cast<gpu::ObjectAttr>(attr);
      auto target = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget());
      if (!target || object.getFormat() != gpu::CompilationTarget::Assembly)
        return binary.emitError("moe-gpu-embed-fatbin: expects NVVM PTX "
                                "objects (gpu-module-to-binary{format=isa})");
      StringRef chip = target.getChip();
      std::string stem = binary.getName().str() + "." + std::to_string(i);
      std::string ptx = scratch.path(stem + ".ptx");
      std::string cubin = scratch.path(stem + ".cubin");
      {
        std::error_code error;
        llvm::raw_fd_ostream os(ptx, error);
        if (error)
          return binary.emitError("cannot write ") << ptx;
        os << object.getObject().getValue();
      }
      if (failed(runTool(binary, tool("ptxas"),
                         {"-arch=" + chip.str(), "-O3", ptx, "-o", cubin},
                         scratch)))
        return failure();
      images.push_back("--image3=kind=elf,sm=" + chip.drop_front(3).str() +
                       ",file=" + cubin);
      // PTX lets the driver compile for newer GPUs; an arch-specific chip's
      // PTX (sm_90a) runs only on that chip, so it does not qualify.
      bool portable = llvm::all_of(chip.drop_front(3), llvm::isDigit);
      if (portable && (!newest || chipNumber(chip) > chipNumber(newest.getChip()))) {
        newest = target;
        newestPTX = ptx;
      }
    }
    if (newest)
      images.push_back("--image3=kind=ptx,sm=" +
                       newest.getChip().drop_front(3).str() +
                       ",file=" + newestPTX);
    std::string fatbin = scratch.path(binary.getName() + ".fatbin");
    std::vector<std::string> args = {"-64", "--create=" + fatbin};
    args.insert(args.end(), images.begin(), images.end());
    if (failed(runTool(binary, tool("fatbinary"), args, scratch)))
      return failure();
    auto contents = llvm::MemoryBuffer::getFile(fatbin, /*IsText=*/false);
    if (!contents)
      return binary.emitError("cannot read ") << fatbin;
    auto first = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
    auto object = gpu::ObjectAttr::get(
        &getContext(), first.getTarget(), gpu::CompilationTarget::Binary,
        StringAttr::get(&getContext(), (*contents)->getBuffer()),
        DictionaryAttr::get(&getContext(),
                            {NamedAttribute(gpu::elfSectionName,
                                            StringAttr::get(&getContext(),
                                                            kFatbinSection))}),
        /*kernels=*/nullptr);
    binary.setObjectsAttr(ArrayAttr::get(&getContext(), {object}));
    return success();
  }

  void runOnOperation() override {
    ScratchFiles scratch;
    if (std::error_code error = llvm::sys::fs::createUniqueDirectory(
            "moe-fatbin", scratch.directory)) {
      getOperation().emitError("cannot create a scratch directory: ")
          << error.message();
      return signalPassFailure();
    }
    for (auto binary : getOperation().getOps<gpu::BinaryOp>())
      if (failed(embed(binary, scratch)))
        return signalPassFailure();
  }
};
} // namespace
