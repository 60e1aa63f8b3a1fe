//===- MMASync.cpp - The warps' projections as mma.sync -------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../MoEToLinalg/MMA.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/Affine/Utils.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/NVGPU/Utils/MMAUtils.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "mlir/Transforms/LoopInvariantCodeMotionUtils.h"

#include <map>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUMMASYNC
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

using nvgpu::MatMulOperandRole;

/// Moves what the K loop computes the same at every step before it: a
/// row's token and the index arithmetic its elements share, and, as nothing
/// in the loop writes memory, the loads of them (the plan's rows), which
/// would otherwise be read again at every step.
static void hoistInvariants(scf::ForOp loop) {
  bool writes = loop.getBody()
                    ->walk([](Operation *op) {
                      return isMemoryEffectFree(op) || isa<memref::LoadOp>(op)
                                 ? WalkResult::advance()
                                 : WalkResult::interrupt();
                    })
                    .wasInterrupted();
  moveLoopInvariantCode(
      {&loop.getRegion()},
      [&](Value value, Region *) { return loop.isDefinedOutsideOfLoop(value); },
      [&](Operation *op, Region *) {
        return (isMemoryEffectFree(op) && isSpeculatable(op)) ||
               (!writes && isa<memref::LoadOp>(op));
      },
      [&](Operation *op, Region *) { loop.moveOutOfLoop(op); });
}

/// Whether upstream's `expandAffineMap` expands `map` to arith: it fails
/// only on a division or remainder by a constant that is not positive.
static bool expands(AffineMap map) {
  return llvm::none_of(map.getResults(), [](AffineExpr result) {
    return result
        .walk([](AffineExpr expr) {
          auto binary = dyn_cast<AffineBinaryOpExpr>(expr);
          if (!binary || binary.getKind() == AffineExprKind::Add ||
              binary.getKind() == AffineExprKind::Mul)
            return WalkResult::advance();
          auto divisor = dyn_cast<AffineConstantExpr>(binary.getRHS());
          return divisor && divisor.getValue() <= 0 ? WalkResult::interrupt()
                                                    : WalkResult::advance();
        })
        .wasInterrupted();
  });
}

/// `map` at `operands`, in arith (matchWarpTile checked that it expands).
static SmallVector<Value> expand(OpBuilder &b, Location loc, AffineMap map,
                                 ValueRange operands) {
  std::optional<SmallVector<Value>> values =
      affine::expandAffineMap(b, loc, map, operands);
  assert(values && "matchWarpTile checks that the maps expand");
  return *values;
}

/// `op`'s operand `operand` at the loop values `at`: a load from its
/// buffer, or the scalar itself.
static Value readOperand(OpBuilder &b, Location loc, linalg::LinalgOp op,
                         OpOperand *operand, ArrayRef<Value> at) {
  Value source = operand->get();
  if (!isa<MemRefType>(source.getType()))
    return source;
  return memref::LoadOp::create(
      b, loc, source, expand(b, loc, op.getMatchingIndexingMap(operand), at));
}

/// Clones the ops of `op`'s body that `values` depend on, at the loop
/// values `at`: a block argument not in `mapping` yet becomes a read of its
/// operand, a `linalg.index` its loop's value. Returns the clones' values.
static SmallVector<Value> cloneAt(OpBuilder &b, linalg::LinalgOp op,
                                  ArrayRef<Value> at, ValueRange values,
                                  IRMapping &mapping) {
  Block *body = op.getBlock();
  Location loc = op.getLoc();
  llvm::DenseSet<Operation *> slice;
  SmallVector<Value> work(values);
  while (!work.empty()) {
    Value value = work.pop_back_val();
    if (mapping.contains(value))
      continue;
    if (auto arg = dyn_cast<BlockArgument>(value)) {
      if (arg.getOwner() != body)
        continue;
      mapping.map(arg,
                  readOperand(b, loc, op, op.getMatchingOpOperand(arg), at));
      continue;
    }
    Operation *def = value.getDefiningOp();
    if (def->getBlock() != body || !slice.insert(def).second)
      continue;
    llvm::append_range(work, def->getOperands());
  }
  for (Operation &inner : body->without_terminator()) {
    if (!slice.contains(&inner))
      continue;
    if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
      mapping.map(index.getResult(), at[index.getDim()]);
      continue;
    }
    // Tiling offsets indices by affine maps: the lanes' code is arith.
    if (auto apply = dyn_cast<affine::AffineApplyOp>(inner)) {
      SmallVector<Value> operands =
          llvm::map_to_vector(apply.getOperands(), [&](Value operand) {
            return mapping.lookupOrDefault(operand);
          });
      mapping.map(apply.getResult(),
                  expand(b, loc, apply.getAffineMap(), operands)[0]);
      continue;
    }
    b.clone(inner, mapping);
  }
  return llvm::map_to_vector(
      values, [&](Value value) { return mapping.lookupOrDefault(value); });
}

namespace {
/// A tensor-core projection of a warp's tile, its result buffer and what
/// its sums start from: a fill's value, or a splat write's attribute.
struct Projection {
  linalg::LinalgOp op;
  MMAContraction contraction;
  Value result;
  OpFoldResult start;
};

/// A warps' loop that moe-gpu-mma-sync rewrites, checked whole before
/// anything changes.
struct WarpTile {
  scf::ForallOp loop;
  /// The projections' loop ranges `[1, rows, columns, depth]`, static.
  SmallVector<int64_t> ranges;
  SmallVector<Projection> projections;
  /// The op that ends the kernel, over the projections' `(t, i, n)`.
  linalg::LinalgOp last;
  /// The warps' loop's static lower bounds, trip counts and steps.
  SmallVector<int64_t> lower, counts, steps;
};

/// Writes one warp's lane code: lane `lane` holds, of each fragment, the
/// elements upstream's `nvgpu` utilities place there for `mma.sync`.
class LaneCode {
public:
  LaneCode(OpBuilder &b, Location loc, Value lane, bool permute)
      : b(b), loc(loc), lane(lane), permute(permute) {}

  /// Upstream's description of a fragment of `role` for mma.sync's
  /// m16n8k16 shape: A is `[M, K]`, B `[N, K]` and C `[M, N]`. The layout
  /// of 16-bit multiplicands is the same for f16 and bf16; upstream
  /// describes it for f16.
  nvgpu::WarpMatrixInfo matrix(MatMulOperandRole role) {
    Type f16 = b.getF16Type();
    switch (role) {
    case MatMulOperandRole::A:
      return {VectorType::get({kMMAShape[0], kMMAShape[2]}, f16), role};
    case MatMulOperandRole::B:
      return {VectorType::get({kMMAShape[1], kMMAShape[2]}, f16), role};
    case MatMulOperandRole::C:
      return {VectorType::get({kMMAShape[0], kMMAShape[1]}, b.getF32Type()),
              role};
    }
    llvm_unreachable("mma.sync has three operand roles");
  }

  /// A lane's fragment of `role`, `[registers, elements]` of `element`, as
  /// upstream sizes mma.sync's registers.
  VectorType fragmentType(MatMulOperandRole role, Type element) {
    FailureOr<nvgpu::FragmentElementInfo> registers =
        nvgpu::getMmaSyncRegisterType(matrix(role));
    assert(succeeded(registers) && "mma.sync m16n8k16 has registers");
    return VectorType::get(
        {registers->numRegistersPerFragment, registers->elementsPerRegister},
        element);
  }

  /// The `(row, column)` of value `value` of a fragment of `role` at this
  /// lane. Computed once a lane code, where it starts.
  std::pair<Value, Value> coordinate(MatMulOperandRole role, int64_t value) {
    // A test's misplaced fragment: A's registers 1 and 2 swapped.
    if (permute && role == MatMulOperandRole::A && value >= 2 && value < 6)
      value = value < 4 ? value + 2 : value - 2;
    auto key = std::make_pair(static_cast<int>(role), value);
    auto known = coordinates.find(key);
    if (known != coordinates.end())
      return known->second;
    FailureOr<AffineMap> map =
        nvgpu::getLaneIdAndValueIdToOperandCoord(b, loc, matrix(role));
    assert(succeeded(map) && "mma.sync m16n8k16 has a fragment layout");
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointAfterValue(lane);
    AffineExpr valueId = getAffineConstantExpr(value, b.getContext());
    auto at = [&](AffineExpr expr) {
      expr = expr.replace(getAffineDimExpr(1, b.getContext()), valueId);
      return affine::expandAffineExpr(b, loc, simplifyAffineExpr(expr, 2, 0),
                                      ValueRange{lane, lane}, ValueRange{});
    };
    return coordinates[key] = {at(map->getResult(0)), at(map->getResult(1))};
  }

  /// The fragment `[registers, elements]` of `role` whose value at
  /// `(row, column)` is `element(row, column)`.
  Value fragment(MatMulOperandRole role, VectorType type,
                 function_ref<Value(Value, Value)> element) {
    SmallVector<Value> values;
    for (int64_t value = 0; value < type.getNumElements(); ++value) {
      auto [row, column] = coordinate(role, value);
      values.push_back(element(row, column));
    }
    return vector::FromElementsOp::create(b, loc, type, values);
  }

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value add(Value lhs, int64_t offset) {
    return offset
               ? arith::AddIOp::create(b, loc, lhs, index(offset)).getResult()
               : lhs;
  }

  OpBuilder &b;
  Location loc;
  Value lane;
  bool permute;
  std::map<std::pair<int, int64_t>, std::pair<Value, Value>> coordinates;
};
} // namespace

/// The element of `projection`'s multiplicand `value` (its lhs or rhs) at
/// `at`, in the tensor cores' 16-bit type. Past the reduction's end `depth`
/// (a partial last step) it is zero: the read is clamped to the last
/// element and its value replaced.
static Value multiplicandAt(LaneCode &lanes, const Projection &projection,
                            Value value, SmallVector<Value> at, int64_t depth) {
  OpBuilder &b = lanes.b;
  Location loc = lanes.loc;
  FloatType element = projection.contraction.element;
  Value inRange;
  if (depth % kMMAShape[2] != 0) {
    Value last = lanes.index(depth - 1);
    inRange =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, at[3], last);
    at[3] = arith::MinUIOp::create(b, loc, at[3], last);
  }
  auto ext = value.getDefiningOp<arith::ExtFOp>();
  bool widened = ext && ext.getIn().getType() == element;
  IRMapping mapping;
  Value result =
      cloneAt(b, projection.op, at, widened ? ext.getIn() : value, mapping)[0];
  if (!widened)
    result = arith::TruncFOp::create(b, loc, element, result);
  if (inRange)
    result = arith::SelectOp::create(
        b, loc, inRange, result,
        arith::ConstantOp::create(b, loc, b.getFloatAttr(element, 0.0)));
  return result;
}

/// Whether `op` may write `buffer` or a view of it (an op without memory
/// effects it reports may).
static bool mayWrite(Operation *op, Value buffer) {
  if (auto view = dyn_cast<ViewLikeOpInterface>(op);
      view && view.getViewSource() == buffer)
    return llvm::any_of(op->getResult(0).getUsers(), [&](Operation *user) {
      return mayWrite(user, op->getResult(0));
    });
  auto effects = dyn_cast<MemoryEffectOpInterface>(op);
  if (!effects)
    return true;
  SmallVector<MemoryEffects::EffectInstance> instances;
  effects.getEffectsOnValue(buffer, instances);
  return llvm::any_of(instances, [](const MemoryEffects::EffectInstance &e) {
    return isa<MemoryEffects::Write>(e.getEffect());
  });
}

/// Whether `op` runs before `reader`: -1 if it does, 1 if after, 0 if
/// neither can be told (nested in it, or in regions apart).
static int orderOf(Operation *op, Operation *reader) {
  if (Operation *there = op->getBlock()->findAncestorOpInBlock(*reader))
    return op == there ? 0 : op->isBeforeInBlock(there) ? -1 : 1;
  if (Operation *there = reader->getBlock()->findAncestorOpInBlock(*op))
    return there == reader ? 0 : there->isBeforeInBlock(reader) ? -1 : 1;
  return 0;
}

/// The value that `buffer`, which `reader` reads, holds all over when
/// `reader` runs: `buffer` is allocated and, before `reader`, written once,
/// by a fill, a vectorized fill (a splat written over the whole buffer) or
/// a copy of another such buffer; null otherwise (what is written after
/// `reader` does not matter).
static OpFoldResult filledWith(Value buffer, Operation *reader) {
  if (!buffer.getDefiningOp<memref::AllocOp>())
    return {};
  Operation *writer = nullptr;
  for (Operation *user : buffer.getUsers()) {
    if (user == reader || !mayWrite(user, buffer))
      continue;
    int order = orderOf(user, reader);
    if (order == 0 || (order < 0 && writer))
      return {};
    if (order < 0)
      writer = user;
  }
  if (!writer)
    return {};
  if (auto fill = dyn_cast<linalg::FillOp>(writer))
    return fill.getInputs()[0];
  if (auto copy = dyn_cast<memref::CopyOp>(writer);
      copy && copy.getTarget() == buffer)
    return filledWith(copy.getSource(), copy);
  auto write = dyn_cast<vector::TransferWriteOp>(writer);
  DenseElementsAttr splat;
  if (write && write.getBase() == buffer &&
      write.getVectorType().getShape() ==
          cast<MemRefType>(buffer.getType()).getShape() &&
      matchPattern(write.getVector(), m_Constant(&splat)) && splat.isSplat())
    return splat.getSplatValue<Attribute>();
  return {};
}

/// Replaces `tile.last` and `tile.projections` by lane code: the
/// projections' sums in `mma.sync` fragments over the reduction, `last`'s
/// body on each fragment element, stored where `last` stores it.
static void writeLaneCode(LaneCode &lanes, const WarpTile &tile) {
  OpBuilder &b = lanes.b;
  Location loc = lanes.loc;
  ArrayRef<Projection> projections = tile.projections;
  linalg::LinalgOp last = tile.last;
  int64_t depth = tile.ranges[3];
  int64_t rowFragments = tile.ranges[1] / kMMAShape[0];
  int64_t columnFragments = tile.ranges[2] / kMMAShape[1];
  Value zero = lanes.index(0);

  Type element = projections.front().contraction.element;
  VectorType aType = lanes.fragmentType(MatMulOperandRole::A, element);
  VectorType bType = lanes.fragmentType(MatMulOperandRole::B, element);
  VectorType cType = lanes.fragmentType(MatMulOperandRole::C, b.getF32Type());
  auto fragmentAt = [&](int64_t projection, int64_t row, int64_t column) {
    return (projection * rowFragments + row) * columnFragments + column;
  };

  // The sums start from the projections' outputs: their fills' values.
  SmallVector<Value> sums;
  for (const Projection &projection : projections) {
    Value start = dyn_cast<Value>(projection.start);
    if (!start)
      start = arith::ConstantOp::create(
          b, loc, cast<TypedAttr>(cast<Attribute>(projection.start)));
    start = vector::BroadcastOp::create(b, loc, cType, start);
    sums.append(rowFragments * columnFragments, start);
  }

  int64_t steps = llvm::divideCeil(depth, kMMAShape[2]) * kMMAShape[2];
  auto loop = scf::ForOp::create(b, loc, zero, lanes.index(steps),
                                 lanes.index(kMMAShape[2]), sums);
  b.setInsertionPointToStart(loop.getBody());
  Value k = loop.getInductionVar();
  SmallVector<Value> next(loop.getRegionIterArgs());
  for (int64_t p = 0, e = projections.size(); p < e; ++p) {
    const Projection &projection = projections[p];
    auto read = [&](Value value, Value row, Value column, bool lhs) {
      SmallVector<Value> at = {zero, zero, zero,
                               arith::AddIOp::create(b, loc, k, column)};
      at[lhs ? 1 : 2] = row;
      return multiplicandAt(lanes, projection, value, at, depth);
    };
    SmallVector<Value> aFragments, bFragments;
    for (int64_t m = 0; m < rowFragments; ++m)
      aFragments.push_back(lanes.fragment(
          MatMulOperandRole::A, aType, [&](Value row, Value column) {
            return read(projection.contraction.lhs,
                        lanes.add(row, m * kMMAShape[0]), column, true);
          }));
    for (int64_t n = 0; n < columnFragments; ++n)
      bFragments.push_back(lanes.fragment(
          MatMulOperandRole::B, bType, [&](Value row, Value column) {
            return read(projection.contraction.rhs,
                        lanes.add(row, n * kMMAShape[1]), column, false);
          }));
    for (int64_t m = 0; m < rowFragments; ++m)
      for (int64_t n = 0; n < columnFragments; ++n) {
        int64_t at = fragmentAt(p, m, n);
        next[at] =
            nvgpu::MmaSyncOp::create(b, loc, aFragments[m], bFragments[n],
                                     next[at], ArrayRef<int64_t>(kMMAShape));
      }
  }
  scf::YieldOp::create(b, loc, next);
  hoistInvariants(loop);

  // `last`'s body on each element of the sums' fragments.
  b.setInsertionPointAfter(loop);
  int64_t registerElements = cType.getDimSize(1);
  for (int64_t m = 0; m < rowFragments; ++m)
    for (int64_t n = 0; n < columnFragments; ++n)
      for (int64_t value = 0; value < cType.getNumElements(); ++value) {
        auto [row, column] = lanes.coordinate(MatMulOperandRole::C, value);
        SmallVector<Value> at = {zero, lanes.add(row, m * kMMAShape[0]),
                                 lanes.add(column, n * kMMAShape[1])};
        IRMapping mapping;
        for (OpOperand *input : last.getDpsInputOperands())
          for (auto [p, projection] : llvm::enumerate(projections))
            if (input->get() == projection.result)
              mapping.map(last.getMatchingBlockArgument(input),
                          vector::ExtractOp::create(
                              b, loc, loop.getResult(fragmentAt(p, m, n)),
                              ArrayRef<int64_t>{value / registerElements,
                                                value % registerElements}));
        auto yield = cast<linalg::YieldOp>(last.getBlock()->getTerminator());
        SmallVector<Value> results =
            cloneAt(b, last, at, yield.getValues(), mapping);
        for (auto [result, init] :
             llvm::zip(results, last.getDpsInitsMutable()))
          memref::StoreOp::create(
              b, loc, result, init.get(),
              expand(b, loc, last.getMatchingIndexingMap(&init), at));
      }
}

/// Erases `buffer` if nothing reads it, and the fills and copies that
/// write it; then the buffers copied into it, likewise.
static void eraseUnread(RewriterBase &rewriter, Value buffer) {
  auto alloc = buffer.getDefiningOp<memref::AllocOp>();
  if (!alloc)
    return;
  SmallVector<Value> sources;
  for (Operation *user : buffer.getUsers()) {
    auto copy = dyn_cast<memref::CopyOp>(user);
    if (copy && copy.getTarget() == buffer)
      sources.push_back(copy.getSource());
    else if (!isa<linalg::FillOp, vector::TransferWriteOp, memref::DeallocOp>(
                 user))
      return;
  }
  for (Operation *user : llvm::make_early_inc_range(buffer.getUsers()))
    rewriter.eraseOp(user);
  rewriter.eraseOp(alloc);
  for (Value source : sources)
    eraseUnread(rewriter, source);
}

/// `loop`'s tensor-core projections and the op that ends them, if the
/// lane code can replace them; otherwise says why, changing nothing.
static FailureOr<WarpTile> matchWarpTile(scf::ForallOp loop) {
  WarpTile tile;
  tile.loop = loop;
  for (Operation &op : *loop.getBody()) {
    auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
    if (!linalgOp || !op.hasAttr(kMMAAttrName))
      continue;
    if (linalgOp.getNumReductionLoops() == 0) {
      if (tile.last)
        return op.emitOpError("ends tensor-core projections that another op "
                              "already ends");
      tile.last = linalgOp;
      continue;
    }
    std::optional<MMAContraction> contraction = matchMMAContraction(linalgOp);
    if (!contraction || !linalgOp.hasPureBufferSemantics())
      return op.emitOpError("is marked for mma.sync but is not a 16-bit "
                            "projection on buffers");
    if (tile.last)
      return op.emitOpError("is a tensor-core projection after the op that "
                            "ends them");
    Value result = linalgOp.getDpsInitOperand(0)->get();
    OpFoldResult start = filledWith(result, &op);
    if (!start)
      return op.emitOpError("sums into a buffer that is not filled once, "
                            "before it, and written by nothing else");
    tile.projections.push_back({linalgOp, *contraction, result, start});
  }
  linalg::LinalgOp last = tile.last;
  if (!last || tile.projections.empty() || !last.hasPureBufferSemantics())
    return loop.emitOpError("is a warps' loop without tensor-core "
                            "projections and the op that ends them");

  tile.ranges = tile.projections.front().op.getStaticLoopRanges();
  ArrayRef<int64_t> ranges = tile.ranges;
  for (const Projection &projection : tile.projections)
    if (linalg::LinalgOp(projection.op).getStaticLoopRanges() != ranges ||
        ranges[0] != 1 || ShapedType::isDynamic(ranges[1]) ||
        ranges[1] % kMMAShape[0] != 0 || ranges[2] % kMMAShape[1] != 0)
      return projection.op->emitOpError(
          "is not a warp's tile of whole mma.sync fragments");

  // The lane code runs `last`'s body at each sum's `(t, i, n)`, on that
  // sum: `last` must run over the projections' tile and read their sums
  // where it runs.
  if (last.getNumLoops() != 3 ||
      last.getStaticLoopRanges() != ranges.take_front(3))
    return last->emitOpError("does not run over the tile of its tensor-core "
                             "projections");
  auto isSums = [&](Value value) {
    return llvm::any_of(tile.projections, [&](const Projection &projection) {
      return projection.result == value;
    });
  };
  AffineMap identity = AffineMap::getMultiDimIdentityMap(3, loop.getContext());
  for (OpOperand *input : last.getDpsInputOperands())
    if (isSums(input->get()) && last.getMatchingIndexingMap(input) != identity)
      return last->emitOpError("reads the sums of a tensor-core projection "
                               "through an indexing map other than the "
                               "identity");
  // The sums' buffers go away: only what initializes them, their
  // projections and `last`'s inputs may use them.
  for (const Projection &projection : tile.projections)
    for (OpOperand &use : projection.result.getUses()) {
      Operation *user = use.getOwner();
      auto copy = dyn_cast<memref::CopyOp>(user);
      if (isa<linalg::FillOp, vector::TransferWriteOp, memref::DeallocOp>(
              user) ||
          (copy && isSums(copy.getTarget())) || user == projection.op ||
          (user == last && last.isDpsInput(&use)))
        continue;
      return user->emitOpError("uses the sums of a tensor-core projection, "
                               "which only the op that ends them may read");
    }

  SmallVector<linalg::LinalgOp> ops = {last};
  for (const Projection &projection : tile.projections)
    ops.push_back(projection.op);
  for (linalg::LinalgOp op : ops) {
    bool expandable = llvm::all_of(op.getIndexingMapsArray(), expands);
    for (Operation &inner : *op.getBlock())
      if (auto apply = dyn_cast<affine::AffineApplyOp>(inner))
        expandable &= expands(apply.getAffineMap());
    if (!expandable)
      return op->emitOpError("has an affine map that does not expand to "
                             "arith: a division by a constant that is not "
                             "positive");
  }

  std::optional<SmallVector<int64_t>> lower =
      getConstantIntValues(loop.getMixedLowerBound());
  std::optional<SmallVector<int64_t>> upper =
      getConstantIntValues(loop.getMixedUpperBound());
  std::optional<SmallVector<int64_t>> steps =
      getConstantIntValues(loop.getMixedStep());
  if (!lower || !upper || !steps || !loop.getOutputs().empty())
    return loop.emitOpError("is a warps' loop of dynamic bounds");
  tile.lower = *lower;
  tile.steps = *steps;
  for (auto [low, high, step] : llvm::zip(*lower, *upper, *steps))
    tile.counts.push_back(llvm::divideCeil(high - low, step));
  return tile;
}

/// Rewrites the warps' loop of `tile` into one over `(warp, lane)` whose
/// lanes run the kernel's tensor-core code.
static void rewriteWarps(RewriterBase &rewriter, const WarpTile &tile,
                         bool permute) {
  scf::ForallOp loop = tile.loop;
  linalg::LinalgOp last = tile.last;
  Location loc = loop.getLoc();
  Block *body = loop.getBody();
  int64_t warps = 1;
  for (int64_t count : tile.counts)
    warps *= count;

  // The warps' loop as one over warps and lanes: lanes run along x.
  MLIRContext *context = rewriter.getContext();
  rewriter.setInsertionPoint(loop);
  auto lanesLoop = scf::ForallOp::create(
      rewriter, loc,
      ArrayRef<OpFoldResult>{rewriter.getIndexAttr(warps),
                             rewriter.getIndexAttr(kWarpLanes)},
      ValueRange{},
      rewriter.getArrayAttr(
          {gpu::GPUThreadMappingAttr::get(context, gpu::MappingId::DimY),
           gpu::GPUThreadMappingAttr::get(context, gpu::MappingId::DimX)}));
  lanesLoop->setAttr(kWarpLanesAttrName, rewriter.getUnitAttr());
  Block *lanesBody = lanesLoop.getBody();
  rewriter.setInsertionPointToStart(lanesBody);
  Value warp = lanesBody->getArgument(0);
  Value lane = lanesBody->getArgument(1);
  SmallVector<Value> ivs;
  int64_t stride = warps;
  for (auto [count, low, step] :
       llvm::zip(tile.counts, tile.lower, tile.steps)) {
    stride /= count;
    auto index = [&](int64_t value) {
      return arith::ConstantIndexOp::create(rewriter, loc, value);
    };
    Value position = arith::RemUIOp::create(
        rewriter, loc,
        arith::DivUIOp::create(rewriter, loc, warp, index(stride)),
        index(count));
    ivs.push_back(arith::AddIOp::create(
        rewriter, loc, index(low),
        arith::MulIOp::create(rewriter, loc, position, index(step))));
  }
  rewriter.eraseOp(body->getTerminator());
  rewriter.inlineBlockBefore(body, lanesBody->getTerminator(), ivs);
  rewriter.eraseOp(loop);

  rewriter.setInsertionPoint(last);
  LaneCode lanes(rewriter, last.getLoc(), lane, permute);
  writeLaneCode(lanes, tile);
  rewriter.eraseOp(last);
  for (const Projection &projection : llvm::reverse(tile.projections)) {
    rewriter.eraseOp(projection.op);
    eraseUnread(rewriter, projection.result);
  }
}

namespace {
struct MoEGPUMMASyncPass : moe::impl::MoEGPUMMASyncBase<MoEGPUMMASyncPass> {
  using Base::Base;

  void runOnOperation() override {
    // Every warps' loop is matched before any is rewritten, so that a
    // function the pass refuses is left as it was.
    SmallVector<WarpTile, 0> tiles;
    bool matched = true;
    getOperation()->walk([&](scf::ForallOp loop) {
      std::optional<ArrayAttr> mapping = loop.getMapping();
      if (!mapping || mapping->empty() ||
          !isa<gpu::GPUWarpMappingAttr>((*mapping)[0]))
        return;
      FailureOr<WarpTile> tile = matchWarpTile(loop);
      if (failed(tile))
        matched = false;
      else
        tiles.push_back(std::move(*tile));
    });
    if (!matched)
      return signalPassFailure();
    IRRewriter rewriter(&getContext());
    for (const WarpTile &tile : tiles)
      rewriteWarps(rewriter, tile, permuteFragments);
  }
};
} // namespace
