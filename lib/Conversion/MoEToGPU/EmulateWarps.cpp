//===- EmulateWarps.cpp - A warp's lanes at once, on the CPU --------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../MoEToLinalg/MMA.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Utils/IndexingUtils.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEMULATEWARPS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// The register fragments of mma.sync.m16n8k16 with 16-bit multiplicands, as
// the PTX ISA's "Matrix Fragments for mma.m16n8k16" tables give them, with
// groupID = lane / 4 and threadID_in_group = lane % 4. A lane's fragment
// `vector<R x 2>` holds values a_i (i = 2·register + element); emulated, a
// warp's fragment is `vector<R x 2 x 32>`, value i of lane l at i·32 + l.
//===----------------------------------------------------------------------===//

/// A (16 × 16): a0, a1 at row groupID, columns threadID_in_group·2 + 0, 1;
/// a2, a3 eight rows lower; a4..a7 as a0..a3, eight columns right.
static int64_t fragmentIndexA(int64_t row, int64_t column) {
  int64_t lane = (row % 8) * 4 + (column % 8) / 2;
  int64_t value = column % 2 + 2 * (row / 8) + 4 * (column / 8);
  return value * kWarpLanes + lane;
}

/// B (16 × 8, K × N): b0, b1 at rows threadID_in_group·2 + 0, 1 of column
/// groupID; b2, b3 eight rows lower.
static int64_t fragmentIndexB(int64_t row, int64_t column) {
  int64_t lane = column * 4 + (row % 8) / 2;
  int64_t value = row % 2 + 2 * (row / 8);
  return value * kWarpLanes + lane;
}

/// C and D (16 × 8): c0, c1 at row groupID, columns threadID_in_group·2 +
/// 0, 1; c2, c3 eight rows lower.
static int64_t fragmentIndexC(int64_t row, int64_t column) {
  int64_t lane = (row % 8) * 4 + column / 2;
  int64_t value = column % 2 + 2 * (row / 8);
  return value * kWarpLanes + lane;
}

namespace {
/// Rewrites a warp's lane code so that one thread runs its 32 lanes: each
/// value that depends on the lane is a vector with a trailing dimension of
/// 32 lanes.
class WarpEmulator {
public:
  WarpEmulator(OpBuilder &b, ModuleOp module, scf::ForallOp lanesLoop)
      : b(b), module(module), lanesLoop(lanesLoop) {}

  /// Emulates `block`'s ops, all but its terminator, at the builder.
  LogicalResult emulate(Block &block) {
    for (Operation &op : block.without_terminator())
      if (failed(emulate(&op)))
        return failure();
    return success();
  }

  /// Whether `type` (or its elements) is a 16-bit float, which the lanes
  /// hold in f32: exactly, and without the C compiler's slow vectors of
  /// bf16.
  static bool isHalf(Type type) {
    Type element = getElementTypeOrSelf(type);
    return element.isBF16() || element.isF16();
  }

  /// The warp's form of `type`: a trailing dimension of lanes, 16-bit
  /// floats as f32.
  static Type widen(Type type) {
    Type element = getElementTypeOrSelf(type);
    if (isHalf(element))
      element = Float32Type::get(type.getContext());
    SmallVector<int64_t> shape;
    if (auto vector = dyn_cast<VectorType>(type))
      llvm::append_range(shape, vector.getShape());
    shape.push_back(kWarpLanes);
    return VectorType::get(shape, element);
  }

  /// `value` of a 16-bit float type in f32; other values as they are.
  Value toLaneElement(Location loc, Value value) {
    if (!isHalf(value.getType()))
      return value;
    Type f32 = b.getF32Type();
    if (auto vector = dyn_cast<VectorType>(value.getType()))
      f32 = vector.clone(f32);
    return arith::ExtFOp::create(b, loc, f32, value);
  }

  /// The lanes' values of `value` of the lane code: its emulation, or the
  /// same value in every lane.
  Value lanesOf(Value value) {
    if (Value lanes = laneValues.lookup(value))
      return lanes;
    Value same = uniform.lookupOrDefault(value);
    Location loc = same.getLoc();
    same = toLaneElement(loc, same);
    auto vector = dyn_cast<VectorType>(same.getType());
    if (!vector)
      return vector::BroadcastOp::create(b, loc, widen(same.getType()), same);
    SmallVector<int64_t> shape = {kWarpLanes};
    llvm::append_range(shape, vector.getShape());
    Value leading = vector::BroadcastOp::create(
        b, loc, VectorType::get(shape, vector.getElementType()), same);
    SmallVector<int64_t> permutation;
    for (int64_t dim = 1; dim <= vector.getRank(); ++dim)
      permutation.push_back(dim);
    permutation.push_back(0);
    return vector::TransposeOp::create(b, loc, leading, permutation);
  }

  void setLanes(Value value, Value lanes) { laneValues[value] = lanes; }
  void setUniform(Value value, Value same) { uniform.map(value, same); }

private:
  bool dependsOnLane(Operation *op) {
    bool depends = false;
    op->walk([&](Operation *inner) {
      for (Value operand : inner->getOperands())
        depends |= laneValues.contains(operand);
    });
    return depends;
  }

  /// The lane-independent value of `value`; null where it depends on the
  /// lane.
  Value uniformOf(Value value) {
    return laneValues.contains(value) ? Value()
                                      : uniform.lookupOrDefault(value);
  }

  /// Lane `lane`'s value of `value`.
  Value atLane(Value value, Value lane) {
    Value lanes = laneValues.lookup(value);
    if (!lanes)
      return uniform.lookupOrDefault(value);
    auto type = cast<VectorType>(lanes.getType());
    if (type.getRank() != 1)
      return {};
    return vector::ExtractOp::create(b, value.getLoc(), lanes,
                                     ArrayRef<OpFoldResult>{lane});
  }

  /// Runs `body` once a lane, in order, with the lanes' results of the
  /// scalar type `resultType` (none if null) gathered into a vector.
  Value eachLane(Location loc, Type resultType,
                 function_ref<Value(Value lane)> body) {
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value lanes = arith::ConstantIndexOp::create(b, loc, kWarpLanes);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    SmallVector<Value> inits;
    if (resultType) {
      auto type = cast<VectorType>(widen(resultType));
      inits.push_back(
          arith::ConstantOp::create(b, loc, type, b.getZeroAttr(type)));
    }
    auto loop = scf::ForOp::create(b, loc, zero, lanes, one, inits);
    if (inits.empty())
      loop.getBody()->getTerminator()->erase();
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value lane = loop.getInductionVar();
    Value value = body(lane);
    if (resultType)
      scf::YieldOp::create(b, loc,
                           ValueRange{vector::InsertOp::create(
                               b, loc, value, loop.getRegionIterArgs()[0],
                               ArrayRef<OpFoldResult>{lane})});
    else
      scf::YieldOp::create(b, loc);
    return resultType ? loop.getResult(0) : Value();
  }

  LogicalResult emulate(Operation *op) {
    if (isa<gpu::LaneIdOp>(op))
      return success();
    if (!dependsOnLane(op)) {
      // Run once, a buffer the lanes allocate (each lane's own on a GPU) is
      // one the lanes share: it holds what each lane's would as long as no
      // store to it depends on the lane, which emulateStore refuses.
      b.clone(*op, uniform);
      return success();
    }
    Location loc = op->getLoc();
    if (auto ext = dyn_cast<arith::ExtFOp>(op);
        ext && isHalf(ext.getIn().getType()) && ext.getType().isF32()) {
      setLanes(ext.getResult(), lanesOf(ext.getIn()));
      return success();
    }
    if (auto trunc = dyn_cast<arith::TruncFOp>(op);
        trunc && isHalf(trunc.getType())) {
      // Rounded to the 16-bit type, held in f32.
      auto lanes = cast<VectorType>(widen(trunc.getType()));
      Value rounded = arith::TruncFOp::create(
          b, loc, lanes.clone(getElementTypeOrSelf(trunc.getType())),
          lanesOf(trunc.getIn()));
      setLanes(trunc.getResult(),
               arith::ExtFOp::create(b, loc, lanes, rounded));
      return success();
    }
    bool halfArithmetic = !isa<arith::SelectOp>(op) &&
                          (llvm::any_of(op->getOperandTypes(), isHalf) ||
                           llvm::any_of(op->getResultTypes(), isHalf));
    if (op->hasTrait<OpTrait::Elementwise>() && op->getNumRegions() == 0 &&
        !halfArithmetic) {
      OperationState state(loc, op->getName());
      for (Value operand : op->getOperands())
        state.addOperands(lanesOf(operand));
      for (Type type : op->getResultTypes())
        state.addTypes(widen(type));
      state.addAttributes(op->getAttrs());
      Operation *lanes = b.create(state);
      for (auto [result, emulated] :
           llvm::zip(op->getResults(), lanes->getResults()))
        setLanes(result, emulated);
      return success();
    }
    if (auto load = dyn_cast<memref::LoadOp>(op))
      return emulateLoad(load);
    if (auto store = dyn_cast<memref::StoreOp>(op))
      return emulateStore(store);
    if (auto elements = dyn_cast<vector::FromElementsOp>(op)) {
      auto type = cast<VectorType>(widen(elements.getType()));
      Value result =
          arith::ConstantOp::create(b, loc, type, b.getZeroAttr(type));
      SmallVector<int64_t> strides =
          computeStrides(elements.getType().getShape());
      for (auto [index, element] : llvm::enumerate(elements.getElements()))
        result = vector::InsertOp::create(b, loc, lanesOf(element), result,
                                          delinearize(index, strides));
      setLanes(elements.getResult(), result);
      return success();
    }
    if (auto extract = dyn_cast<vector::ExtractOp>(op)) {
      FailureOr<SmallVector<OpFoldResult>> position =
          uniformPosition(op, extract.getMixedPosition());
      if (failed(position))
        return failure();
      setLanes(extract.getResult(),
               vector::ExtractOp::create(b, loc, lanesOf(extract.getSource()),
                                         *position));
      return success();
    }
    if (auto broadcast = dyn_cast<vector::BroadcastOp>(op)) {
      setLanes(broadcast.getResult(),
               vector::BroadcastOp::create(b, loc, widen(broadcast.getType()),
                                           lanesOf(broadcast.getSource())));
      return success();
    }
    if (auto loop = dyn_cast<scf::ForOp>(op))
      return emulateFor(loop);
    if (auto mma = dyn_cast<nvgpu::MmaSyncOp>(op))
      return emulateMMA(mma);
    if (auto shuffle = dyn_cast<gpu::ShuffleOp>(op))
      return emulateShuffle(shuffle);
    return op->emitOpError("depends on the lane and cannot be emulated");
  }

  /// `op`'s position in a vector, which must not depend on the lane.
  FailureOr<SmallVector<OpFoldResult>>
  uniformPosition(Operation *op, ArrayRef<OpFoldResult> position) {
    SmallVector<OpFoldResult> result;
    for (OpFoldResult at : position) {
      auto value = dyn_cast<Value>(at);
      if (!value) {
        result.push_back(at);
        continue;
      }
      Value same = uniformOf(value);
      if (!same)
        return op->emitOpError("at a lane-dependent position cannot be "
                               "emulated");
      result.push_back(same);
    }
    return result;
  }

  /// A load, or a store, whose place or value depends on the lane: each
  /// lane's in turn.
  LogicalResult emulateLoad(memref::LoadOp load) {
    if (!uniformOf(load.getMemRef()))
      return load.emitOpError("from a lane-dependent buffer cannot be "
                              "emulated");
    Value lanes =
        eachLane(load.getLoc(), load.getType(), [&](Value lane) -> Value {
          SmallVector<Value> indices;
          for (Value index : load.getIndices())
            indices.push_back(atLane(index, lane));
          return toLaneElement(
              load.getLoc(),
              memref::LoadOp::create(b, load.getLoc(),
                                     uniformOf(load.getMemRef()), indices));
        });
    setLanes(load.getResult(), lanes);
    return success();
  }

  LogicalResult emulateStore(memref::StoreOp store) {
    if (!uniformOf(store.getMemRef()) ||
        isa<VectorType>(store.getValueToStore().getType()))
      return store.emitOpError("to a lane-dependent buffer cannot be "
                               "emulated");
    if (isLanesOwn(store.getMemRef()))
      return store.emitOpError("depends on the lane, to a buffer each lane "
                               "allocates: emulated, the lanes share it");
    eachLane(store.getLoc(), Type(), [&](Value lane) -> Value {
      SmallVector<Value> indices;
      for (Value index : store.getIndices())
        indices.push_back(atLane(index, lane));
      Value value = atLane(store.getValueToStore(), lane);
      Type stored = store.getValueToStore().getType();
      if (value.getType() != stored)
        value = arith::TruncFOp::create(b, store.getLoc(), stored, value);
      memref::StoreOp::create(b, store.getLoc(), value,
                              uniformOf(store.getMemRef()), indices);
      return Value();
    });
    return success();
  }

  /// Whether `buffer` is, or views, a buffer the lanes' loop allocates.
  bool isLanesOwn(Value buffer) {
    while (auto view = buffer.getDefiningOp<ViewLikeOpInterface>())
      buffer = view.getViewSource();
    Operation *alloc = buffer.getDefiningOp();
    return isa_and_nonnull<memref::AllocOp, memref::AllocaOp>(alloc) &&
           lanesLoop->isProperAncestor(alloc);
  }

  /// A loop over lane-independent bounds, every value it carries per lane.
  LogicalResult emulateFor(scf::ForOp loop) {
    Value lower = uniformOf(loop.getLowerBound());
    Value upper = uniformOf(loop.getUpperBound());
    Value step = uniformOf(loop.getStep());
    if (!lower || !upper || !step)
      return loop.emitOpError("with lane-dependent bounds cannot be "
                              "emulated");
    SmallVector<Value> inits = llvm::map_to_vector(
        loop.getInitArgs(), [&](Value init) { return lanesOf(init); });
    auto lanes =
        scf::ForOp::create(b, loop.getLoc(), lower, upper, step, inits);
    if (inits.empty())
      lanes.getBody()->getTerminator()->erase();
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(lanes.getBody());
      setUniform(loop.getInductionVar(), lanes.getInductionVar());
      for (auto [arg, emulated] :
           llvm::zip(loop.getRegionIterArgs(), lanes.getRegionIterArgs()))
        setLanes(arg, emulated);
      if (failed(emulate(*loop.getBody())))
        return failure();
      auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
      SmallVector<Value> yielded = llvm::map_to_vector(
          yield.getResults(), [&](Value value) { return lanesOf(value); });
      scf::YieldOp::create(b, yield.getLoc(), yielded);
    }
    for (auto [result, emulated] :
         llvm::zip(loop.getResults(), lanes.getResults()))
      setLanes(result, emulated);
    return success();
  }

  /// D = A·B + C over the warp's fragments, each product (exact) and sum
  /// in f32: the fragments go through stack buffers to the module's
  /// `moe_emulated_mma_m16n8k16`, one function that every mma.sync of the
  /// module calls (so that the C compiler builds it once).
  LogicalResult emulateMMA(nvgpu::MmaSyncOp mma) {
    auto element =
        cast<VectorType>(mma.getMatrixA().getType()).getElementType();
    if (ArrayRef<int64_t>(mma.getMmaShapeAsArray()) !=
            ArrayRef<int64_t>(kMMAShape) ||
        !(element.isF16() || element.isBF16()) ||
        !mma.getRes().getType().getElementType().isF32())
      return mma.emitOpError("is emulated for m16n8k16 with f16 or bf16 "
                             "multiplicands and f32 sums only");
    Location loc = mma.getLoc();
    func::FuncOp emulated = emulatedMMA(loc);
    auto resultType = cast<VectorType>(widen(mma.getRes().getType()));
    auto flatType = VectorType::get({resultType.getNumElements()},
                                    resultType.getElementType());
    // Upstream takes a call for a possible stack allocation, which would
    // keep the emulated block's OpenMP loop body in a memref.alloca_scope
    // whose loops could not become branches: the call and its buffers get
    // a scope of their own, which returns D flat (an LLVM type there).
    auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{flatType});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&scope.getBodyRegion().emplaceBlock());
      Value zero = arith::ConstantIndexOp::create(b, loc, 0);
      SmallVector<Value> buffers;
      for (Value fragment :
           {mma.getMatrixA(), mma.getMatrixB(), mma.getMatrixC()}) {
        Value lanes = lanesOf(fragment);
        auto type = cast<VectorType>(lanes.getType());
        buffers.push_back(stackBuffer(loc, type));
        vector::TransferWriteOp::create(
            b, loc, lanes, buffers.back(),
            SmallVector<Value>(type.getRank(), zero));
      }
      buffers.push_back(stackBuffer(loc, resultType));
      func::CallOp::create(b, loc, emulated, buffers);
      Value result = vector::LoadOp::create(
          b, loc, flatType, flatBuffer(loc, buffers.back()), ValueRange{zero});
      memref::AllocaScopeReturnOp::create(b, loc, result);
    }
    setLanes(mma.getRes(), vector::ShapeCastOp::create(b, loc, resultType,
                                                       scope.getResult(0)));
    return success();
  }

  Value stackBuffer(Location loc, VectorType type) {
    return memref::AllocaOp::create(
        b, loc, MemRefType::get(type.getShape(), type.getElementType()));
  }

  /// `buffer` (a static memref) as a 1-D one.
  Value flatBuffer(Location loc, Value buffer) {
    auto type = cast<MemRefType>(buffer.getType());
    ReassociationIndices all;
    for (int64_t dim = 0; dim < type.getRank(); ++dim)
      all.push_back(dim);
    return memref::CollapseShapeOp::create(b, loc, buffer,
                                           ArrayRef<ReassociationIndices>{all});
  }

  /// A constant table of `[rows, columns]` i32: the place of each element
  /// of a matrix in its warp's flattened fragment, by `indexOf`.
  Value fragmentTable(Location loc, StringRef name, int64_t rows,
                      int64_t columns, int64_t (*indexOf)(int64_t, int64_t)) {
    auto type = MemRefType::get({rows, columns}, b.getI32Type());
    if (!module.lookupSymbol(name)) {
      SmallVector<int32_t> places;
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t column = 0; column < columns; ++column)
          places.push_back(indexOf(row, column));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(module.getBody());
      memref::GlobalOp::create(
          b, loc, name, b.getStringAttr("private"), type,
          DenseIntElementsAttr::get(
              RankedTensorType::get({rows, columns}, b.getI32Type()),
              ArrayRef<int32_t>(places)),
          /*constant=*/true, /*alignment=*/nullptr);
    }
    return memref::GetGlobalOp::create(b, loc, type, name);
  }

  /// The module's `moe_emulated_mma_m16n8k16(A, B, C, D)` over the warps'
  /// fragments in f32 (`[4, 2, 32]`, `[2, 2, 32]`, `[2, 2, 32]` and D like
  /// C), made at its first use: for each element (m, n) of D, C's plus the
  /// sum over k of A(m, k)·B(k, n), each read at its place in its fragment.
  func::FuncOp emulatedMMA(Location loc) {
    StringRef name = "moe_emulated_mma_m16n8k16";
    if (auto known = module.lookupSymbol<func::FuncOp>(name))
      return known;
    Type f32 = b.getF32Type();
    auto fragment = [&](int64_t registers) -> Type {
      return MemRefType::get({registers, 2, kWarpLanes}, f32);
    };
    SmallVector<Type> inputs = {fragment(4), fragment(2), fragment(2),
                                fragment(2)};
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(module.getBody());
    auto function =
        func::FuncOp::create(b, loc, name, b.getFunctionType(inputs, {}));
    function.setPrivate();
    // Inlined and unrolled at each mma.sync, it would make the library
    // many times larger and slower to compile, for no gain in a test build.
    function->setAttr("passthrough",
                      b.getArrayAttr({b.getStringAttr("noinline")}));
    Block *entry = function.addEntryBlock();
    b.setInsertionPointToStart(entry);
    SmallVector<Value> flat = llvm::map_to_vector(
        entry->getArguments(), [&](Value arg) { return flatBuffer(loc, arg); });
    ArrayRef<int64_t> shape(kMMAShape);
    Value tableA = fragmentTable(loc, "moe_mma_fragment_a", shape[0], shape[2],
                                 fragmentIndexA);
    Value tableB = fragmentTable(loc, "moe_mma_fragment_b", shape[2], shape[1],
                                 fragmentIndexB);
    Value tableC = fragmentTable(loc, "moe_mma_fragment_c", shape[0], shape[1],
                                 fragmentIndexC);
    auto index = [&](int64_t value) -> Value {
      return arith::ConstantIndexOp::create(b, loc, value);
    };
    auto place = [&](Value table, Value row, Value column) -> Value {
      Value at = memref::LoadOp::create(b, loc, table, ValueRange{row, column});
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), at);
    };
    Value zero = index(0), one = index(1);
    auto rows = scf::ForOp::create(b, loc, zero, index(shape[0]), one);
    b.setInsertionPointToStart(rows.getBody());
    Value m = rows.getInductionVar();
    auto columns = scf::ForOp::create(b, loc, zero, index(shape[1]), one);
    b.setInsertionPointToStart(columns.getBody());
    Value n = columns.getInductionVar();
    Value at = place(tableC, m, n);
    Value start = memref::LoadOp::create(b, loc, flat[2], ValueRange{at});
    auto sum = scf::ForOp::create(b, loc, zero, index(shape[2]), one,
                                  ValueRange{start});
    b.setInsertionPointToStart(sum.getBody());
    Value k = sum.getInductionVar();
    Value a = memref::LoadOp::create(b, loc, flat[0],
                                     ValueRange{place(tableA, m, k)});
    Value bValue = memref::LoadOp::create(b, loc, flat[1],
                                          ValueRange{place(tableB, k, n)});
    scf::YieldOp::create(b, loc,
                         ValueRange{arith::AddFOp::create(
                             b, loc, sum.getRegionIterArgs()[0],
                             arith::MulFOp::create(b, loc, a, bValue))});
    b.setInsertionPointAfter(sum);
    memref::StoreOp::create(b, loc, sum.getResult(0), flat[3], ValueRange{at});
    b.setInsertionPointAfter(rows);
    func::ReturnOp::create(b, loc);
    return function;
  }

  /// Lane l reads lane j: l ^ b, l + b, l - b or b, where b is the
  /// offset's low 5 bits, all that `shfl.sync` reads of it. As upstream
  /// lowers the shuffle to `shfl.sync` (its clamp `width - 1`, or
  /// `32 - width` for `up`, which for a width of 1 to 32 leaves the clamp's
  /// segment mask zero), j is valid below `width`, or for `up` from
  /// `32 - width` on; an invalid j reads the lane's own value.
  LogicalResult emulateShuffle(gpu::ShuffleOp shuffle) {
    Location loc = shuffle.getLoc();
    if (isa<VectorType>(shuffle.getValue().getType()))
      return shuffle.emitOpError("of vectors cannot be emulated");
    Value value = lanesOf(shuffle.getValue());
    // Lane `lane`'s source lane and whether it is valid.
    auto sourceOf = [&](Value lane) -> std::pair<Value, Value> {
      Type i32 = b.getI32Type();
      Value self = arith::IndexCastOp::create(b, loc, i32, lane);
      Value offset = arith::AndIOp::create(
          b, loc, atLane(shuffle.getOffset(), lane),
          arith::ConstantOp::create(b, loc,
                                    b.getI32IntegerAttr(kWarpLanes - 1)));
      Value width = atLane(shuffle.getWidth(), lane);
      Value source, valid;
      gpu::ShuffleMode mode = shuffle.getMode();
      if (mode == gpu::ShuffleMode::UP) {
        source = arith::SubIOp::create(b, loc, self, offset);
        Value first = arith::SubIOp::create(
            b, loc,
            arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(kWarpLanes)),
            width);
        valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, source,
                                      first);
      } else {
        if (mode == gpu::ShuffleMode::XOR)
          source = arith::XOrIOp::create(b, loc, self, offset);
        else if (mode == gpu::ShuffleMode::DOWN)
          source = arith::AddIOp::create(b, loc, self, offset);
        else
          source = offset;
        valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, source,
                                      width);
      }
      source = arith::SelectOp::create(b, loc, valid, source, self);
      return {arith::IndexCastOp::create(b, loc, b.getIndexType(), source),
              valid};
    };
    setLanes(shuffle.getShuffleResult(),
             eachLane(loc, shuffle.getValue().getType(), [&](Value lane) {
               return vector::ExtractOp::create(
                   b, loc, value, ArrayRef<OpFoldResult>{sourceOf(lane).first});
             }));
    setLanes(shuffle.getValid(), eachLane(loc, b.getI1Type(), [&](Value lane) {
               return sourceOf(lane).second;
             }));
    return success();
  }

  OpBuilder &b;
  ModuleOp module;
  scf::ForallOp lanesLoop;
  IRMapping uniform;
  llvm::DenseMap<Value, Value> laneValues;
};
} // namespace

/// Rewrites `loop` over `(warp, lane)` into one over warps running their
/// lanes at once.
static LogicalResult emulateWarps(OpBuilder &b, ModuleOp module,
                                  scf::ForallOp loop) {
  Location loc = loop.getLoc();
  std::optional<SmallVector<int64_t>> upper =
      getConstantIntValues(loop.getMixedUpperBound());
  if (!upper || upper->size() != 2 || (*upper)[1] != kWarpLanes ||
      !loop.isNormalized() || !loop.getOutputs().empty())
    return loop.emitOpError("is not a loop over (warp, 32 lanes)");
  b.setInsertionPoint(loop);
  auto warps = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr((*upper)[0])}, ValueRange{},
      b.getArrayAttr({gpu::GPUThreadMappingAttr::get(b.getContext(),
                                                     gpu::MappingId::DimX)}));
  b.setInsertionPointToStart(warps.getBody());
  WarpEmulator emulator(b, module, loop);
  Block *body = loop.getBody();
  emulator.setUniform(body->getArgument(0), warps.getBody()->getArgument(0));
  SmallVector<int64_t> lanes(kWarpLanes);
  std::iota(lanes.begin(), lanes.end(), 0);
  Value laneIds =
      arith::ConstantOp::create(b, loc, b.getIndexVectorAttr(lanes));
  emulator.setLanes(body->getArgument(1), laneIds);
  body->walk([&](gpu::LaneIdOp laneId) {
    emulator.setLanes(laneId.getResult(), laneIds);
  });
  if (failed(emulator.emulate(*body)))
    return failure();
  loop.erase();
  return success();
}

namespace {
struct MoEEmulateWarpsPass
    : moe::impl::MoEEmulateWarpsBase<MoEEmulateWarpsPass> {
  void runOnOperation() override {
    SmallVector<scf::ForallOp> loops;
    getOperation()->walk([&](scf::ForallOp loop) {
      if (loop->hasAttr(kWarpLanesAttrName))
        loops.push_back(loop);
    });
    OpBuilder b(&getContext());
    for (scf::ForallOp loop : loops)
      if (failed(emulateWarps(b, getOperation(), loop)))
        return signalPassFailure();
  }
};
} // namespace
