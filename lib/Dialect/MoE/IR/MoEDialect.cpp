//===- MoEDialect.cpp - The moe dialect -----------------------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.cpp.inc"
#include "moe-mlir/Dialect/MoE/IR/MoEEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.cpp.inc"

void MoEDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "moe-mlir/Dialect/MoE/IR/MoEOps.cpp.inc"
      >();
}

bool CPUTargetAttr::hasFeature(StringRef name) const {
  return llvm::any_of(getFeatures(), [&](Attribute feature) {
    auto text = dyn_cast<StringAttr>(feature);
    return text && text.getValue() == name;
  });
}

LogicalResult
TilingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                   ArrayRef<int64_t> distribution, ArrayRef<int64_t> threads,
                   ArrayRef<int64_t> cache, ArrayRef<int64_t> registers,
                   ArrayRef<int64_t> reduction, ArrayRef<int64_t> interchange) {
  for (ArrayRef<int64_t> level :
       {distribution, threads, cache, registers, reduction, interchange})
    if (llvm::any_of(level, [](int64_t size) { return size < 0; }))
      return emitError() << "tile sizes must not be negative";
  if (!threads.empty() && threads.size() != distribution.size())
    return emitError() << "'threads' needs a 'distribution' level of the "
                          "same length";
  if (!reduction.empty() && !registers.empty() &&
      reduction.size() != registers.size())
    return emitError() << "'reduction' and 'registers' must have the same "
                          "length";
  for (auto [parallel, step] : llvm::zip(registers, reduction))
    if (parallel > 0 && step > 0)
      return emitError() << "a loop is tiled by 'registers' or by "
                            "'reduction', not both";
  if (!interchange.empty()) {
    SmallVector<int64_t> order(interchange);
    llvm::sort(order);
    if (interchange.size() != registers.size() ||
        llvm::any_of(llvm::enumerate(order), [](auto entry) {
          return entry.value() != static_cast<int64_t>(entry.index());
        }))
      return emitError() << "'interchange' must be a permutation of the "
                            "'registers' level's loops";
  }
  return success();
}

/// `#moe.tiling<distribution = [16], registers = [2, 4, 0], ...>`, each
/// level optional.
Attribute TilingAttr::parse(AsmParser &parser, Type) {
  static constexpr StringLiteral kLevels[] = {"distribution", "threads",
                                              "cache",        "registers",
                                              "reduction",    "interchange"};
  SmallVector<int64_t> levels[6];
  if (parser.parseLess())
    return {};
  if (failed(parser.parseOptionalGreater())) {
    do {
      StringRef name;
      SMLoc at = parser.getCurrentLocation();
      if (parser.parseKeyword(&name) || parser.parseEqual())
        return {};
      auto *level = llvm::find(kLevels, name);
      if (level == std::end(kLevels)) {
        parser.emitError(at) << "unknown tiling level '" << name << "'";
        return {};
      }
      SmallVector<int64_t> &sizes = levels[level - std::begin(kLevels)];
      if (!sizes.empty()) {
        parser.emitError(at) << "tiling level '" << name << "' given twice";
        return {};
      }
      if (parser.parseCommaSeparatedList(
              AsmParser::Delimiter::Square, [&]() {
                return parser.parseInteger(sizes.emplace_back());
              }))
        return {};
    } while (succeeded(parser.parseOptionalComma()));
    if (parser.parseGreater())
      return {};
  }
  return parser.getChecked<TilingAttr>(parser.getContext(), levels[0],
                                       levels[1], levels[2], levels[3],
                                       levels[4], levels[5]);
}

void TilingAttr::print(AsmPrinter &printer) const {
  printer << "<";
  llvm::ListSeparator separator;
  auto level = [&](StringRef name, ArrayRef<int64_t> sizes) {
    if (sizes.empty())
      return;
    printer.getStream() << separator << name << " = [";
    llvm::interleaveComma(sizes, printer);
    printer << "]";
  };
  level("distribution", getDistribution());
  level("threads", getThreads());
  level("cache", getCache());
  level("registers", getRegisters());
  level("reduction", getReduction());
  level("interchange", getInterchange());
  printer << ">";
}
