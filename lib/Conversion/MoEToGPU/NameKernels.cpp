//===- NameKernels.cpp - The linalg stage's kernels among the others ------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOENAMEKERNELS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoENameKernelsPass : moe::impl::MoENameKernelsBase<MoENameKernelsPass> {
  void runOnOperation() override {
    func::FuncOp function = getOperation();
    StringRef prefix = function.getName();
    prefix.consume_back("_kernel");
    MLIRContext *context = &getContext();
    auto names = function->getAttrOfType<ArrayAttr>(kKernelNamesAttrName);
    size_t count = 0;
    function.walk([&](gpu::LaunchOp launch) {
      if (launch.getFunction())
        return;
      std::string name = "grouped_" + std::to_string(count);
      if (names && count < names.size())
        name = cast<StringAttr>(names[count]).str();
      ++count;
      launch.setModuleAttr(FlatSymbolRefAttr::get(context, kKernelModuleName));
      launch.setFunctionAttr(
          FlatSymbolRefAttr::get(context, (prefix + "_" + name).str()));
    });
    function->removeAttr(kKernelNamesAttrName);
  }
};
} // namespace
