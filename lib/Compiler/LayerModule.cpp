//===- LayerModule.cpp - A config as a moe module -------------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/LayerModule.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::moe;

static Type elementType(MLIRContext &context, DataType type) {
  switch (type) {
  case DataType::f32:
    return Float32Type::get(&context);
  case DataType::bf16:
    return BFloat16Type::get(&context);
  case DataType::f16:
    return Float16Type::get(&context);
  }
  llvm_unreachable("unknown data type");
}

/// The element type of a weight field's kernel argument.
static Type fieldElementType(MLIRContext &context, const WeightField &field,
                             Type data) {
  switch (field.type) {
  case FieldType::data:
    return data;
  case FieldType::int8:
  case FieldType::uint8:
  case FieldType::fp8e4m3:
  case FieldType::e8m0:
    return IntegerType::get(&context, 8);
  case FieldType::int32:
    return IntegerType::get(&context, 32);
  case FieldType::f32:
    return elementType(context, DataType::f32);
  case FieldType::bf16:
    return elementType(context, DataType::bf16);
  case FieldType::f16:
    return elementType(context, DataType::f16);
  }
  llvm_unreachable("unknown field type");
}

/// The weight field `name` as a kernel reads it (`get`), null where
/// absent: a quantized projection as the moe.dequantize of its integers,
/// scales, zero points and column order.
static Value weightOperand(OpBuilder &b, const LayerConfig &config,
                           StringRef name,
                           llvm::function_ref<Value(StringRef)> get) {
  Value value = get(name);
  const ExpertWeights &q = config.expertWeights;
  if (!value || !q.isQuantized() || !name.ends_with("_proj"))
    return value;
  auto packed = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(packed.getShape());
  shape.back() = shape.back() * 8 / q.bits();
  WeightFormat format = WeightFormat::int8;
  switch (q.format) {
  case ExpertWeights::Format::int4:
    format = WeightFormat::int4;
    break;
  case ExpertWeights::Format::fp8e4m3:
    format = WeightFormat::f8e4m3;
    break;
  case ExpertWeights::Format::mxfp4:
    format = WeightFormat::f4e2m1;
    break;
  default:
    break;
  }
  return DequantizeOp::create(
      b, b.getUnknownLoc(), RankedTensorType::get(shape, b.getF32Type()), value,
      get((name + "_scales").str()), get((name + "_zeros").str()),
      get((name + "_perm").str()), format,
      q.groupSize ? q.groupSize : shape.back());
}

namespace {
/// Builds one kernel function: memref arguments, each read as a tensor.
class KernelBuilder {
public:
  KernelBuilder(OpBuilder &builder, ModuleOp module, const std::string &name)
      : b(builder), module(module), name(name) {}

  /// Declares an argument; returns its index.
  unsigned addArgument(StringRef argName, ArrayRef<int64_t> shape,
                       Type element) {
    return addArgument(argName, MemRefType::get(shape, element));
  }
  unsigned addArgument(StringRef argName, Type type) {
    names.push_back(argName.str());
    types.push_back(type);
    return types.size() - 1;
  }

  /// Creates the function and returns the tensors of its arguments.
  SmallVector<Value> begin() {
    b.setInsertionPointToEnd(module.getBody());
    Location loc = b.getUnknownLoc();
    function = func::FuncOp::create(b, loc, name,
                                    b.getFunctionType(types, {}));
    function->setAttr("llvm.emit_c_interface", b.getUnitAttr());
    for (unsigned i = 0; i < names.size(); ++i)
      function.setArgAttr(i, "moe.name", b.getStringAttr(names[i]));
    b.setInsertionPointToStart(function.addEntryBlock());
    SmallVector<Value> tensors;
    for (BlockArgument arg : function.getArguments()) {
      auto type = dyn_cast<MemRefType>(arg.getType());
      if (!type) {
        tensors.push_back(Value());
        continue;
      }
      tensors.push_back(bufferization::ToTensorOp::create(
          b, loc,
          RankedTensorType::get(type.getShape(), type.getElementType()), arg,
          b.getUnitAttr()));
    }
    return tensors;
  }

  /// Writes `value` into argument `index` and returns.
  void finish(ArrayRef<std::pair<Value, unsigned>> results) {
    Location loc = b.getUnknownLoc();
    for (auto [value, index] : results)
      bufferization::MaterializeInDestinationOp::create(
          b, loc, TypeRange{}, value, function.getArgument(index),
          /*restrict=*/true, /*writable=*/true);
    func::ReturnOp::create(b, loc);
  }

private:
  OpBuilder &b;
  ModuleOp module;
  std::string name;
  SmallVector<std::string> names;
  SmallVector<Type> types;
  func::FuncOp function;
};
} // namespace

/// Sets the activation and its parameters on an op that runs FFNs.
template <typename OpTy>
static void setActivation(OpTy op, const LayerConfig &config) {
  op.setActivation(*symbolizeActivation(config.activation));
  op.setSwigluAlpha(APFloat(static_cast<float>(config.swigluAlpha)));
  op.setSwigluLimit(APFloat(static_cast<float>(config.swigluLimit)));
  op.setSwigluUpOffset(APFloat(static_cast<float>(config.swigluUpOffset)));
}

/// A shard's two kernels in place of forward: its experts over rows other
/// ranks sent, and the combine of the rows they sent back with the shared
/// expert (see LayerModule.h).
static void buildShardKernels(OpBuilder &b, ModuleOp module,
                              const LayerConfig &config, Type data) {
  Location loc = b.getUnknownLoc();
  int64_t dynamic = ShapedType::kDynamic;
  int64_t hidden = config.hiddenSize;
  Type f32 = b.getF32Type();
  std::vector<WeightField> fields = weightFields(config);
  {
    KernelBuilder kernel(b, module, config.name + "_experts_kernel");
    unsigned rows = kernel.addArgument("rows", {dynamic, hidden}, data);
    unsigned ids = kernel.addArgument("ids", {dynamic, 1}, b.getI32Type());
    unsigned weights = kernel.addArgument("weights", {dynamic, 1}, f32);
    llvm::StringMap<unsigned> index;
    for (const WeightField &field : fields)
      if (field.used && field.isRoutedExpert())
        index[field.name] =
            kernel.addArgument(field.name, field.kernelShape(),
                               fieldElementType(*b.getContext(), field, data));
    unsigned out = kernel.addArgument("out", {dynamic, hidden}, f32);
    SmallVector<Value> args = kernel.begin();
    auto arg = [&](StringRef name) -> Value {
      auto it = index.find(name);
      return it == index.end() ? Value() : args[it->second];
    };
    auto get = [&](StringRef name) {
      return weightOperand(b, config, name, arg);
    };
    auto experts = LocalExpertsOp::create(
        b, loc, RankedTensorType::get({dynamic, hidden}, f32), args[rows],
        args[ids], args[weights], get("gate_proj"), get("up_proj"),
        get("down_proj"), get("gate_proj_bias"), get("up_proj_bias"),
        get("down_proj_bias"), ActivationAttr(), FloatAttr(), FloatAttr(), FloatAttr(),
        UnitAttr());
    setActivation(experts, config);
    experts.setRouterWeightOnInput(config.routerWeightOnInput);
    kernel.finish({{experts.getOutput(), out}});
  }
  {
    KernelBuilder kernel(b, module, config.name + "_combine_kernel");
    unsigned x = kernel.addArgument("x", {dynamic, hidden}, data);
    llvm::StringMap<unsigned> index;
    for (const WeightField &field : fields)
      if (field.used && field.isCombineWeight())
        index[field.name] =
            kernel.addArgument(field.name, field.kernelShape(),
                               fieldElementType(*b.getContext(), field, data));
    unsigned expertOutput =
        kernel.addArgument("expert_out", {dynamic, hidden}, f32);
    int64_t slots = config.slotsPerToken();
    unsigned slotRows =
        kernel.addArgument("slot_rows", {dynamic, slots}, b.getI64Type());
    unsigned y = kernel.addArgument("y", {dynamic, hidden}, data);
    SmallVector<Value> args = kernel.begin();
    auto arg = [&](StringRef name) -> Value {
      auto it = index.find(name);
      return it == index.end() ? Value() : args[it->second];
    };
    auto get = [&](StringRef name) {
      return weightOperand(b, config, name, arg);
    };
    Value shared;
    if (config.hasSharedExpert()) {
      auto sharedExpert = SharedExpertOp::create(
          b, loc, RankedTensorType::get({dynamic, hidden}, f32), args[x],
          get("shared_gate_proj"), get("shared_up_proj"),
          get("shared_down_proj"), get("shared_expert_gate"),
          ActivationAttr(), FloatAttr(), FloatAttr(), FloatAttr());
      setActivation(sharedExpert, config);
      shared = sharedExpert.getOutput();
    }
    // The experts' rows arrive weighted: combine adds them as they are.
    auto combine = CombineOp::create(
        b, loc, args[x].getType(), args[expertOutput], args[slotRows],
        Value(), shared, get("output_bias"));
    kernel.finish({{combine.getOutput(), y}});
  }
}

/// The `#moe.level` of an inner level.
static LevelAttr levelAttr(MLIRContext &context, const LevelRouting &level) {
  return LevelAttr::get(
      &context, level.topK, *symbolizeScoring(level.scoring),
      level.normalizeTopK,
      APFloat(static_cast<float>(level.routedScalingFactor)), level.nGroup,
      level.topkGroup, *symbolizeGroupScore(level.groupScore),
      level.routerBias, level.selectionBias,
      APFloat(static_cast<float>(level.normalizeP)),
      APFloat(static_cast<float>(level.sparsemixerEps)));
}

OwningOpRef<ModuleOp> mlir::moe::buildLayerModule(MLIRContext &context,
                                                  const LayerConfig &config) {
  context.loadDialect<MoEDialect, func::FuncDialect, LLVM::LLVMDialect,
                      bufferization::BufferizationDialect>();
  OpBuilder b(&context);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  Type data = elementType(context, config.dtype);
  int64_t dynamic = ShapedType::kDynamic;
  int64_t hidden = config.hiddenSize;
  int64_t slots = config.slotsPerToken();
  std::vector<WeightField> fields = weightFields(config);

  auto routingAttrs = [&](auto op) {
    op.setTopK(config.topK);
    op.setScoring(*symbolizeScoring(config.scoring));
    op.setNormalizeTopK(config.normalizeTopK);
    op.setRoutedScalingFactor(
        APFloat(static_cast<float>(config.routedScalingFactor)));
    op.setNGroup(config.nGroup);
    op.setTopkGroup(config.topkGroup);
    op.setGroupScore(*symbolizeGroupScore(config.groupScore));
    op.setNormalizeP(APFloat(static_cast<float>(config.normalizeP)));
    op.setSparsemixerEps(APFloat(static_cast<float>(config.sparsemixerEps)));
    op.setRouting(*symbolizeRouting(config.routing));
    op.setCapacityFactor(APFloat(config.capacityFactor));
  };
  // Operands by field name; absent fields stay null. Weights go over in
  // the kernel's shapes (leading dimensions collapsed). For CUDA the first
  // argument is the stream the kernels run on (moe-gpu-use-stream-argument).
  auto operandsOf = [&](KernelBuilder &kernel, bool routingOnly) {
    llvm::StringMap<unsigned> index;
    if (config.isCUDA())
      kernel.addArgument("stream", LLVM::LLVMPointerType::get(&context));
    index["x"] = kernel.addArgument("x", {dynamic, hidden}, data);
    for (const WeightField &field : fields)
      if (field.used && (field.routing || !routingOnly))
        index[field.name] =
            kernel.addArgument(field.name, field.kernelShape(),
                               fieldElementType(context, field, data));
    return index;
  };
  // The operands of the inner levels, level 2 first.
  struct LevelOperands {
    SmallVector<Value> routers, routerBiases, selectionBiases;
  };
  auto levelOperands = [&](auto get) {
    LevelOperands operands;
    for (size_t i = 0; i < config.innerLevels.size(); ++i) {
      std::string prefix = "level" + std::to_string(i + 2) + "_";
      operands.routers.push_back(get(prefix + "router"));
      if (Value bias = get(prefix + "router_bias"))
        operands.routerBiases.push_back(bias);
      if (Value bias = get(prefix + "selection_bias"))
        operands.selectionBiases.push_back(bias);
    }
    return operands;
  };

  if (config.isShard()) {
    buildShardKernels(b, *module, config, data);
  } else {
    KernelBuilder kernel(b, *module, config.name + "_forward_kernel");
    llvm::StringMap<unsigned> index = operandsOf(kernel, false);
    unsigned y = kernel.addArgument("y", {dynamic, hidden}, data);
    SmallVector<Value> args = kernel.begin();
    auto arg = [&](StringRef fieldName) -> Value {
      auto it = index.find(fieldName);
      return it == index.end() ? Value() : args[it->second];
    };
    auto get = [&](StringRef fieldName) {
      return weightOperand(b, config, fieldName, arg);
    };
    LevelOperands levels = levelOperands(get);
    SmallVector<Attribute> levelAttrs;
    for (const LevelRouting &level : config.innerLevels)
      levelAttrs.push_back(levelAttr(context, level));
    auto layer = LayerOp::create(
        b, loc, args[index["x"]].getType(), get("x"), get("router"),
        get("router_bias"), get("selection_bias"), levels.routers,
        levels.routerBiases, levels.selectionBiases, get("gate_proj"),
        get("up_proj"), get("down_proj"), get("gate_proj_bias"),
        get("up_proj_bias"), get("down_proj_bias"), get("shared_gate_proj"),
        get("shared_up_proj"), get("shared_down_proj"),
        get("shared_expert_gate"), get("output_bias"),
        b.getI64IntegerAttr(config.topK), ScoringAttr(), BoolAttr(),
        FloatAttr(), IntegerAttr(), IntegerAttr(), GroupScoreAttr(),
        FloatAttr(), FloatAttr(), RoutingAttr(), FloatAttr(),
        ActivationAttr(), FloatAttr(), FloatAttr(), FloatAttr(), UnitAttr(),
        b.getArrayAttr(levelAttrs));
    routingAttrs(layer);
    setActivation(layer, config);
    layer.setRouterWeightOnInput(config.routerWeightOnInput);
    kernel.finish({{layer.getOutput(), y}});
  }
  {
    // The routing alone: the gate, then one moe.refine per inner level, in
    // descending choice order at every level (no `unordered`).
    KernelBuilder kernel(b, *module, config.name + "_route_kernel");
    llvm::StringMap<unsigned> index = operandsOf(kernel, true);
    unsigned ids =
        kernel.addArgument("ids", {dynamic, slots}, b.getI32Type());
    unsigned weights =
        kernel.addArgument("weights", {dynamic, slots}, b.getF32Type());
    SmallVector<Value> args = kernel.begin();
    auto get = [&](StringRef fieldName) -> Value {
      auto it = index.find(fieldName);
      return it == index.end() ? Value() : args[it->second];
    };
    int64_t width = config.isExpertChoice() ? config.numExperts : config.topK;
    auto perSlot = [&](Type type) {
      return RankedTensorType::get({dynamic, width}, type);
    };
    auto gate = GateOp::create(
        b, loc, perSlot(b.getI32Type()), perSlot(b.getF32Type()), get("x"),
        get("router"), get("router_bias"), get("selection_bias"),
        b.getI64IntegerAttr(config.topK), ScoringAttr(), BoolAttr(),
        FloatAttr(), IntegerAttr(), IntegerAttr(), GroupScoreAttr(),
        FloatAttr(), FloatAttr(), RoutingAttr(), FloatAttr(), UnitAttr());
    routingAttrs(gate);
    Value levelIds = gate.getIds(), levelWeights = gate.getWeights();
    for (size_t i = 0; i < config.innerLevels.size(); ++i) {
      const LevelRouting &level = config.innerLevels[i];
      std::string prefix = "level" + std::to_string(i + 2) + "_";
      width *= level.topK;
      auto refine = RefineOp::create(
          b, loc, perSlot(b.getI32Type()), perSlot(b.getF32Type()), get("x"),
          levelIds, levelWeights, get(prefix + "router"),
          get(prefix + "router_bias"), get(prefix + "selection_bias"),
          level.topK, *symbolizeScoring(level.scoring), level.normalizeTopK,
          APFloat(static_cast<float>(level.routedScalingFactor)),
          level.nGroup, level.topkGroup,
          *symbolizeGroupScore(level.groupScore),
          APFloat(static_cast<float>(level.normalizeP)),
          APFloat(static_cast<float>(level.sparsemixerEps)),
          /*unordered=*/false);
      levelIds = refine.getIds();
      levelWeights = refine.getWeights();
    }
    kernel.finish({{levelIds, ids}, {levelWeights, weights}});
  }
  return module;
}
