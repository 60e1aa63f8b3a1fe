//===- CABI.cpp - The C ABI of a generated library ------------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/CABI.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cstdint>

using namespace mlir::moe;

namespace {
/// The error codes every generated library returns; 0 is success.
struct ErrorCode {
  const char *suffix;
  int value;
  const char *message;
};
constexpr ErrorCode kErrorCodes[] = {
    {"OK", 0, "success"},
    {"ERROR_NULL_ARGUMENT", 1, "a required pointer argument is NULL"},
    {"ERROR_NEGATIVE_TOKENS", 2, "num_tokens is negative"},
    {"ERROR_MISSING_WEIGHT", 3, "a weight the config needs is NULL"},
    {"ERROR_UNUSED_WEIGHT", 4,
     "a weight is given that the config does not use"},
    {"ERROR_OUT_OF_MEMORY", 5, "out of memory"},
    {"ERROR_TOO_MANY_TOKENS", 6,
     "num_tokens is too large: the layer's buffers would pass 2^62 bytes"},
    {"ERROR_MISALIGNED", 7, "an array is not aligned to its element size"},
    {"ERROR_NO_DEVICE", 8, "no CUDA driver or device"},
    {"ERROR_CUDA", 9, "a CUDA driver call failed"},
    {"ERROR_BAD_COUNTS", 10,
     "an expert count is negative or the counts do not add up to num_rows"},
    {"ERROR_BAD_PERMUTATION", 11,
     "a row of a *_perm array is not a permutation of 0 to K - 1"},
};
} // namespace

/// The most tokens whose buffers stay under 2^62 bytes, so that no 64-bit
/// offset or size computed from them can wrap: the plan has T · width rows
/// (the GPU kernels' plan, padded per expert to the row tile, at most
/// kGPURowTile times as many), and no row of any buffer is wider than the
/// widest of these sizes, in elements of at most 8 bytes.
static int64_t maxTokens(const LayerConfig &c) {
  int64_t widest = std::max({c.hiddenSize, c.intermediateSize,
                             c.sharedIntermediateSize, c.leafExperts()});
  int64_t rowsPerSlot = c.isCUDA() ? kGPURowTile : 1;
  int64_t rowBytes;
  if (__builtin_mul_overflow(8 * rowsPerSlot, c.slotsPerToken(), &rowBytes) ||
      __builtin_mul_overflow(rowBytes, widest, &rowBytes))
    return 0;
  return (int64_t(1) << 62) / rowBytes;
}

/// The most rows a shard's run_experts takes: one plan row each, its
/// buffers under 2^62 bytes like forward's (the plan's padding to the row
/// tile, a few rows per expert, is far inside that margin).
static int64_t maxShardRows(const LayerConfig &c) {
  int64_t widest = std::max({c.hiddenSize, c.intermediateSize,
                             c.localExperts()});
  return (int64_t(1) << 62) / (8 * widest);
}

static std::string upper(const std::string &text) {
  return llvm::StringRef(text).upper();
}

/// `text` as a C string literal.
static std::string cString(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

/// How a quantized projection's arrays hold its weights
/// (docs/QUANTIZATION.md), for the header.
static std::string quantizedLayout(const ExpertWeights &q) {
  if (q.format == ExpertWeights::Format::bf16 ||
      q.format == ExpertWeights::Format::f16)
    return std::string("\n * Projections (*_proj) are ") +
           weightFormatName(q.format) + ".";
  if (!q.isQuantized())
    return "";
  std::string group = q.groupSize
                          ? "each group of " + std::to_string(q.groupSize) +
                                " consecutive elements of a row"
                          : "each row";
  using Format = ExpertWeights::Format;
  std::string text =
      "\n * Projections (*_proj, [..][N][K] in nn.Linear layout) are " +
      std::string(weightFormatName(q.format)) + " with " +
      (q.format == Format::mxfp4 ? "an e8m0 exponent" : "an f32 scale") +
      " for " + group + " (*_proj_scales): w = (q - zero) * scale.";
  std::string nibbles =
      "two a byte: within each group, byte b holds element b in\n * its low "
      "nibble and element b + group/2 in its high nibble. ";
  std::string order =
      q.actOrder
          ? "\n * *_proj_perm[..][K] (int32): column k of a row holds the "
            "weight of input\n * element perm[k] (act order)."
          : "";
  switch (q.format) {
  case Format::int8:
    return text + "\n * q is a signed byte; zero is 0." + order;
  case Format::fp8e4m3:
    return text + "\n * q is a float8 e4m3fn byte; zero is 0." + order;
  case Format::mxfp4:
    return text + "\n * q is a float4 e2m1 value, " + nibbles +
           "zero is 0;\n * scale is 2^(e - 127), and 0 for e = 0." + order;
  default:
    return text + "\n * q is 0 to 15, " + nibbles + "zero is " +
           (q.zeroPoints ? "*_proj_zeros[..][N][K/group], one byte each."
                         : "8.") +
           order;
  }
}

std::string mlir::moe::emitHeader(const LayerConfig &c) {
  std::string text;
  llvm::raw_string_ostream os(text);
  const std::string &n = c.name;
  std::string guard = upper(n) + "_H";
  os << "/* " << n
     << ".h: a Mixture-of-Experts layer compiled by moe-compile.\n"
     << " * Config: " << c.toJSON() << "\n"
     << " * Weights are row-major arrays of " << dataTypeName(c.dtype)
     << " unless marked; x and y are [num_tokens][" << c.hiddenSize << "]."
     << (c.isCUDA() ? "\n * CUDA: every array pointer is a device pointer."
                    : "")
     << quantizedLayout(c.expertWeights) << " */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  os << "#define " << upper(n) << "_HIDDEN_SIZE " << c.hiddenSize << "\n"
     << "#define " << upper(n) << "_INTERMEDIATE_SIZE " << c.intermediateSize
     << "\n#define " << upper(n) << "_NUM_EXPERTS " << c.numExperts << "\n"
     << "#define " << upper(n) << "_TOP_K " << c.topK << "\n"
     << "#define " << upper(n) << "_SHARED_INTERMEDIATE_SIZE "
     << c.sharedIntermediateSize << "\n";
  if (c.isHierarchical()) {
    // NUM_EXPERTS and TOP_K above are level 1's; INTERMEDIATE_SIZE is the
    // leaves'.
    os << "/* Hierarchical: every expert of a level is an MoE layer over "
          "the next. */\n"
       << "#define " << upper(n) << "_NUM_LEVELS "
       << c.innerLevels.size() + 1 << "\n";
    for (size_t i = 0; i < c.innerLevels.size(); ++i)
      os << "#define " << upper(n) << "_LEVEL" << i + 2 << "_NUM_EXPERTS "
         << c.innerLevels[i].numExperts << "\n"
         << "#define " << upper(n) << "_LEVEL" << i + 2 << "_TOP_K "
         << c.innerLevels[i].topK << "\n";
    os << "#define " << upper(n) << "_NUM_LEAF_EXPERTS " << c.leafExperts()
       << "\n"
       << "/* Columns of route()'s outputs: level 1's top_k (num_experts for "
          "expert\n   choice) times every inner level's top_k; ids are leaf "
          "ids. */\n";
  } else {
    os << "/* Columns of route()'s outputs: top_k, or num_experts for expert "
          "choice. */\n";
  }
  os << "#define " << upper(n) << "_ROUTE_WIDTH " << c.slotsPerToken()
     << "\n"
     << "/* The most tokens one call takes: the layer's buffers stay under "
        "2^62 bytes. */\n"
     << "#define " << upper(n) << "_MAX_TOKENS " << maxTokens(c) << "\n";
  if (c.isShard())
    os << "/* Expert parallelism: this library holds experts [FIRST, FIRST + "
          "COUNT)\n   (leaf ids) of the layer; the router scores all of "
          "them. */\n"
       << "#define " << upper(n) << "_EXPERT_SHARD_FIRST " << c.shardFirst
       << "\n#define " << upper(n) << "_EXPERT_SHARD_COUNT " << c.shardCount
       << "\n#define " << upper(n) << "_MAX_ROWS " << maxShardRows(c) << "\n";
  os << "\n";
  for (const ErrorCode &code : kErrorCodes)
    os << "#define " << upper(n) << "_" << code.suffix << " " << code.value
       << " /* " << code.message << " */\n";
  os << "\n/* Pointers to row-major arrays; NULL where marked unused. */\n"
     << "typedef struct " << n << "_weights {\n";
  for (const WeightField &field : weightFields(c)) {
    os << "  const void *" << field.name << "; /* ";
    if (!field.used) {
      os << "unused: NULL */\n";
      continue;
    }
    for (int64_t size : field.shape)
      os << "[" << size << "]";
    if (field.type != FieldType::data)
      os << " " << field.elementName(c.dtype);
    os << " */\n";
  }
  os << "} " << n << "_weights;\n"
     << "typedef struct " << n << "_context " << n << "_context;\n\n"
     << "/* Validates the weights and keeps the pointers (not the struct): "
        "the arrays\n   must outlive the context."
     << (c.isCUDA()
             ? " Finds the GPU: the CUDA context current on this\n   thread, "
               "else device 0's primary context. Device memory is not "
               "copied: a\n   weight must be aligned to its element size. "
               "*/\n"
             : " A weight at an address that is not a multiple of\n   its "
               "element size is copied instead. */\n")
     << "int " << n << "_create(const " << n << "_weights *w, " << n
     << "_context **ctx);\n";
  if (c.isShard())
    os << "/* A shard has no forward(): a token's experts live on several "
          "ranks. Per\n   call, each rank routes its own tokens (route()), "
          "sends each kept slot's\n   row of x to the rank holding its "
          "expert, which runs run_experts() on\n   what it received and "
          "sends the results back, and combine() sums them.\n   Every "
          "array must be aligned to its element size. */\n"
       << "/* out[r][H] (f32) = "
       << (c.routerWeightOnInput ? "FFN_e(weights[r] * rows[r])"
                                 : "weights[r] * FFN_e(rows[r])")
       << " for num_rows rows grouped by\n   local expert: counts[i] rows of expert FIRST + i, i < COUNT, "
          "one group\n   after the other. */\n"
       << "int " << n << "_run_experts(" << n
       << "_context *ctx, const void *rows, int64_t num_rows,\n"
       << "    const int64_t *counts, const float *weights, float *out);\n"
       << "/* y[t] = the shared expert of x[t] (if any) + the sum, in f32, of "
          "expert_out[t][j]\n   over the slots j < ROUTE_WIDTH whose "
          "topk_ids[t][j] >= 0, in ascending\n   expert order (as forward() "
          "adds them)"
       << (c.outputBias ? ", + output_bias" : "")
       << ", rounded once to the layer's type.\n   topk_ids is "
          "route()'s [num_tokens][ROUTE_WIDTH]; expert_out is f32\n   "
          "[num_tokens][ROUTE_WIDTH][H], run_experts()'s rows back in slot "
          "order. */\n"
       << "int " << n << "_combine(" << n
       << "_context *ctx, const void *x, int64_t num_tokens,\n"
       << "    const int32_t *topk_ids, const float *expert_out, void *y);\n";
  else
    os << "/* y[num_tokens][H] = the layer applied to x[num_tokens][H]. Safe "
          "to call\n   concurrently on one context with distinct outputs. x "
          "and y (and route()'s\n   outputs) must be aligned to their element "
          "size. */\n"
       << "int " << n << "_forward(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y);\n";
  if (c.isCUDA())
    os << "/* forward() enqueued on `stream` (a cudaStream_t; NULL is the "
          "default\n   stream), returning before it runs: x, y and the "
          "weights must stay\n   valid until the stream has run it. */\n"
       << "int " << n << "_forward_async(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y,\n"
       << "    void *stream);\n";
  os << "/* The routing alone: [num_tokens][" << upper(n)
     << "_ROUTE_WIDTH] expert ids\n   (-1: dropped or not chosen) and their "
        "weights. */\n"
     << "int " << n << "_route(" << n
     << "_context *ctx, const void *x, int64_t num_tokens,\n"
     << "    int32_t *topk_ids, float *topk_weights);\n"
     << "void " << n << "_destroy(" << n << "_context *ctx);\n"
     << "const char *" << n << "_strerror(int code);\n"
     << "const char *" << n << "_config_json(void);\n\n"
     << "#ifdef __cplusplus\n}\n#endif\n\n#endif /* " << guard << " */\n";
  return text;
}

/// The checks an entry point over `num_tokens` tokens starts with (SPEC
/// §4): the context, the token count (none returns at once), then each of
/// `arrays` (a parameter and its element size) present and aligned.
static void
emitTokenChecks(llvm::raw_ostream &os, const LayerConfig &c,
                std::initializer_list<std::pair<const char *, int64_t>> arrays) {
  std::string N = upper(c.name);
  os << "  if (!ctx) return " << N << "_ERROR_NULL_ARGUMENT;\n"
     << "  if (num_tokens < 0) return " << N << "_ERROR_NEGATIVE_TOKENS;\n"
     << "  if (num_tokens == 0) return " << N << "_OK;\n"
     << "  if (num_tokens > " << N << "_MAX_TOKENS) return " << N
     << "_ERROR_TOO_MANY_TOKENS;\n  if (";
  llvm::interleave(
      arrays, os, [&](const auto &array) { os << "!" << array.first; },
      " || ");
  os << ") return " << N << "_ERROR_NULL_ARGUMENT;\n  if (";
  llvm::interleave(
      arrays, os,
      [&](const auto &array) {
        os << "misaligned(" << array.first << ", " << array.second << ")";
      },
      " || ");
  os << ") return " << N << "_ERROR_MISALIGNED;\n";
}

/// Which weights a kernel takes.
using WeightFilter = llvm::function_ref<bool(const WeightField &)>;

/// A memref descriptor over the context's pointer for each weight `takes`
/// selects, named as the field.
static void emitWeightViews(llvm::raw_ostream &os,
                            const std::vector<WeightField> &fields,
                            WeightFilter takes) {
  for (const WeightField &field : fields) {
    if (!field.used || !takes(field))
      continue;
    os << "  memref" << field.kernelRank << " " << field.name << " = view"
       << field.kernelRank << "(ctx->w." << field.name;
    for (int64_t size : field.kernelShape())
      os << ", " << size;
    os << ");\n";
  }
}

/// Those descriptors as a kernel call's arguments.
static void emitWeightArgs(llvm::raw_ostream &os,
                           const std::vector<WeightField> &fields,
                           WeightFilter takes) {
  for (const WeightField &field : fields)
    if (field.used && takes(field))
      os << ", &" << field.name;
}

/// A shard's run_experts and combine (CPU only: the config refuses a cuda
/// shard). The wrapper turns counts into a local expert id per row, and a
/// token's kept slots into combine's rows in ascending expert order, which
/// is the order in which forward's fused combine adds them.
static void emitShardEntries(llvm::raw_ostream &os, const LayerConfig &c,
                             const std::vector<WeightField> &fields) {
  const std::string &n = c.name;
  std::string N = upper(n);
  int64_t elementSize = elementBytes(c.dtype);
  int64_t hidden = c.hiddenSize;
  int64_t width = c.slotsPerToken();
  auto routedExpert = [](const WeightField &field) {
    return field.isRoutedExpert();
  };
  auto combineWeight = [](const WeightField &field) {
    return field.isCombineWeight();
  };

  os << "int " << n << "_run_experts(" << n
     << "_context *ctx, const void *rows, int64_t num_rows,\n"
     << "    const int64_t *counts, const float *weights, float *out) {\n"
     << "  if (!ctx || !counts) return " << N << "_ERROR_NULL_ARGUMENT;\n"
     << "  if (num_rows < 0) return " << N << "_ERROR_NEGATIVE_TOKENS;\n"
     << "  if (misaligned(counts, 8)) return " << N << "_ERROR_MISALIGNED;\n"
     << "  int64_t total = 0;\n"
     << "  for (int64_t i = 0; i < " << c.shardCount << "; ++i) {\n"
     << "    if (counts[i] < 0 || counts[i] > num_rows - total) return " << N
     << "_ERROR_BAD_COUNTS;\n"
     << "    total += counts[i];\n  }\n"
     << "  if (total != num_rows) return " << N << "_ERROR_BAD_COUNTS;\n"
     << "  if (num_rows == 0) return " << N << "_OK;\n"
     << "  if (num_rows > " << N << "_MAX_ROWS) return " << N
     << "_ERROR_TOO_MANY_TOKENS;\n"
     << "  if (!rows || !weights || !out) return " << N
     << "_ERROR_NULL_ARGUMENT;\n"
     << "  if (misaligned(rows, " << elementSize
     << ") || misaligned(weights, 4) || misaligned(out, 4))\n"
     << "    return " << N << "_ERROR_MISALIGNED;\n"
     << "  int32_t *ids = malloc((size_t)num_rows * sizeof *ids);\n"
     << "  if (!ids) return " << N << "_ERROR_OUT_OF_MEMORY;\n"
     << "  for (int64_t i = 0, r = 0; i < " << c.shardCount << "; ++i)\n"
     << "    for (int64_t k = 0; k < counts[i]; ++k) ids[r++] = (int32_t)i;\n"
     << "  memref2 rv = view2(rows, num_rows, " << hidden << ");\n"
     << "  memref2 iv = view2(ids, num_rows, 1);\n"
     << "  memref2 wv = view2(weights, num_rows, 1);\n"
     << "  memref2 ov = view2(out, num_rows, " << hidden << ");\n";
  emitWeightViews(os, fields, routedExpert);
  os << "  _mlir_ciface_" << n << "_experts_kernel(&rv, &iv, &wv";
  emitWeightArgs(os, fields, routedExpert);
  os << ", &ov);\n  free(ids);\n  return " << N << "_OK;\n}\n\n";

  os << "int " << n << "_combine(" << n
     << "_context *ctx, const void *x, int64_t num_tokens,\n"
     << "    const int32_t *topk_ids, const float *expert_out, void *y) {\n";
  emitTokenChecks(os, c,
                  {{"x", elementSize}, {"topk_ids", 4}, {"expert_out", 4},
                   {"y", elementSize}});
  os << "  size_t slots = (size_t)num_tokens * " << width << ";\n"
     << "  int64_t *slot_rows = malloc(slots * sizeof *slot_rows);\n"
     << "  if (!slot_rows) return " << N << "_ERROR_OUT_OF_MEMORY;\n"
     << "  for (int64_t t = 0; t < num_tokens; ++t) {\n"
     << "    const int32_t *id = topk_ids + t * " << width << ";\n"
     << "    int64_t *row = slot_rows + t * " << width << ";\n"
     << "    int kept = 0;\n"
     << "    for (int j = 0; j < " << width << "; ++j) {\n"
     << "      if (id[j] < 0) continue;\n"
     << "      /* Insertion by ascending expert id; a tie keeps slot order. */\n"
     << "      int i = kept++;\n"
     << "      while (i > 0 && id[row[i - 1] - t * " << width
     << "] > id[j]) {\n"
     << "        row[i] = row[i - 1];\n        --i;\n      }\n"
     << "      row[i] = t * " << width << " + j;\n    }\n"
     << "    for (int j = kept; j < " << width << "; ++j) row[j] = -1;\n"
     << "  }\n"
     << "  memref2 xv = view2(x, num_tokens, " << hidden << ");\n"
     << "  memref2 ev = view2(expert_out, (int64_t)slots, " << hidden
     << ");\n"
     << "  memref2 sv = view2(slot_rows, num_tokens, " << width << ");\n"
     << "  memref2 yv = view2(y, num_tokens, " << hidden << ");\n";
  emitWeightViews(os, fields, combineWeight);
  os << "  _mlir_ciface_" << n << "_combine_kernel(&xv";
  emitWeightArgs(os, fields, combineWeight);
  os << ", &ev, &sv, &yv);\n"
     << "  free(slot_rows);\n  return " << N << "_OK;\n}\n\n";
}

std::string mlir::moe::emitWrapperSource(const LayerConfig &c) {
  std::string text;
  llvm::raw_string_ostream os(text);
  const std::string &n = c.name;
  std::string N = upper(n);
  std::vector<WeightField> fields = weightFields(c);

  os << "/* The C ABI of " << n << ", over its MLIR kernels. */\n"
     << "#include \"" << n << ".h\"\n\n#include <stdlib.h>\n#include <string.h>\n\n"
     << "typedef struct { void *allocated, *aligned; int64_t offset, "
        "sizes[1], strides[1]; } memref1;\n"
     << "typedef struct { void *allocated, *aligned; int64_t offset, "
        "sizes[2], strides[2]; } memref2;\n"
     << "typedef struct { void *allocated, *aligned; int64_t offset, "
        "sizes[3], strides[3]; } memref3;\n\n";

  bool cuda = c.isCUDA();
  if (cuda)
    os << "/* The CUDA runtime (runtime/CUDARuntime.c), linked in. */\n"
       << "int moeCudaInit(void);\nvoid moeCudaBeginCall(void);\n"
       << "int moeCudaEndCall(void *stream, int wait);\n\n";
  // Kernel declarations, arguments in buildLayerModule's order.
  auto declare = [&](const char *kernel, bool routingOnly,
                     const char *outputs) {
    os << "void _mlir_ciface_" << n << "_" << kernel << "("
       << (cuda ? "void *stream, " : "") << "memref2 *x";
    for (const WeightField &field : fields)
      if (field.used && (!routingOnly || field.routing))
        os << ", memref" << field.kernelRank << " *" << field.name;
    os << ", " << outputs << ");\n";
  };
  if (c.isShard()) {
    os << "void _mlir_ciface_" << n
       << "_experts_kernel(memref2 *rows, memref2 *ids, memref2 *weights";
    for (const WeightField &field : fields)
      if (field.used && field.isRoutedExpert())
        os << ", memref" << field.kernelRank << " *" << field.name;
    os << ", memref2 *out);\n"
       << "void _mlir_ciface_" << n << "_combine_kernel(memref2 *x";
    for (const WeightField &field : fields)
      if (field.used && field.isCombineWeight())
        os << ", memref" << field.kernelRank << " *" << field.name;
    os << ", memref2 *expert_out, memref2 *slot_rows, memref2 *y);\n";
  } else {
    declare("forward_kernel", false, "memref2 *y");
  }
  declare("route_kernel", true, "memref2 *ids, memref2 *weights");

  // A cuda library's context holds the caller's device pointers only.
  if (cuda)
    os << "\n/* w holds the device pointers the kernels read. */\n"
       << "struct " << n << "_context { " << n << "_weights w; };\n";
  else
    os << R"(
/* w holds the pointers the kernels read; owned[i], the aligned copy of
   weight i that create made, if any. */
struct )" << n << R"(_context {
  )" << n << R"(_weights w;
  void *owned[)" << fields.size() << R"(];
};

/* The kernels load whole elements, so a weight must be aligned to its
   element size; one that is not is copied to memory that is. */
static const void *aligned_copy(const void *p, size_t bytes, void **owned) {
  void *copy = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (copy)
    memcpy(copy, p, bytes);
  *owned = copy;
  return copy;
}
)";

  os << R"(
static int misaligned(const void *p, uintptr_t alignment) {
  return (uintptr_t)p % alignment != 0;
}
)";
  // The kernels read a projection's inputs through its *_perm rows: an
  // index out of range would read outside them.
  if (!cuda && c.expertWeights.actOrder)
    os << R"(
/* 0 if each of the `rows` rows of `columns` int32 at p (any alignment) is a
   permutation of 0 to columns - 1, 1 if one is not, -1 out of memory. */
static int bad_permutation(const void *p, int64_t rows, int64_t columns) {
  unsigned char *seen = malloc((size_t)columns);
  if (!seen) return -1;
  int bad = 0;
  for (int64_t r = 0; r < rows && !bad; ++r) {
    memset(seen, 0, (size_t)columns);
    for (int64_t k = 0; k < columns && !bad; ++k) {
      int32_t v;
      memcpy(&v, (const char *)p + 4 * (r * columns + k), 4);
      bad = v < 0 || v >= columns || seen[v];
      if (!bad) seen[v] = 1;
    }
  }
  free(seen);
  return bad;
}
)";
  os << R"(
static memref1 view1(const void *p, int64_t d0) {
  memref1 m = {(void *)p, (void *)p, 0, {d0}, {1}};
  return m;
}
static memref2 view2(const void *p, int64_t d0, int64_t d1) {
  memref2 m = {(void *)p, (void *)p, 0, {d0, d1}, {d1, 1}};
  return m;
}
static memref3 view3(const void *p, int64_t d0, int64_t d1, int64_t d2) {
  memref3 m = {(void *)p, (void *)p, 0, {d0, d1, d2}, {d1 * d2, d2, 1}};
  return m;
}

const char *)"
     << n << R"(_strerror(int code) {
  switch (code) {
)";
  for (const ErrorCode &code : kErrorCodes)
    os << "  case " << code.value << ": return " << cString(code.message)
       << ";\n";
  os << "  default: return \"unknown error code\";\n  }\n}\n\n";

  os << "const char *" << n << "_config_json(void) {\n  return "
     << cString(c.toJSON()) << ";\n}\n\n";

  // The runtime's status (0, no device, a failed call, out of memory) as
  // this library's error code.
  if (cuda)
    os << "static int " << n << "_status(int runtime) {\n"
       << "  switch (runtime) {\n  case 0: return " << N << "_OK;\n"
       << "  case 1: return " << N << "_ERROR_NO_DEVICE;\n"
       << "  case 3: return " << N << "_ERROR_OUT_OF_MEMORY;\n"
       << "  default: return " << N << "_ERROR_CUDA;\n  }\n}\n\n";

  os << "void " << n << "_destroy(" << n << "_context *ctx) {\n"
     << "  if (!ctx) return;\n";
  if (!cuda)
    os << "  for (size_t i = 0; i < sizeof ctx->owned / sizeof *ctx->owned; "
          "++i)\n"
       << "    free(ctx->owned[i]);\n";
  os << "  free(ctx);\n}\n\n";

  os << "int " << n << "_create(const " << n << "_weights *w, " << n
     << "_context **ctx) {\n"
     << "  if (!w || !ctx) return " << N << "_ERROR_NULL_ARGUMENT;\n"
     << "  *ctx = NULL;\n";
  for (const WeightField &field : fields)
    os << "  if (" << (field.used ? "!" : "") << "w->" << field.name
       << ") return " << N
       << (field.used ? "_ERROR_MISSING_WEIGHT" : "_ERROR_UNUSED_WEIGHT")
       << ";\n";
  int64_t elementSize = elementBytes(c.dtype);
  // A device pointer cannot be copied here: a misaligned one is an error.
  if (cuda) {
    for (const WeightField &field : fields)
      if (field.used)
        os << "  if (misaligned(w->" << field.name << ", "
           << field.elementBytes(c.dtype) << ")) return " << N
           << "_ERROR_MISALIGNED;\n";
    os << "  int status = moeCudaInit();\n"
       << "  if (status) return " << n << "_status(status);\n";
  }
  for (const WeightField &field : fields) {
    if (!field.used || cuda || field.type != FieldType::int32)
      continue;
    int64_t rows = 1;
    for (int64_t size : llvm::ArrayRef<int64_t>(field.shape).drop_back())
      rows *= size;
    os << "  switch (bad_permutation(w->" << field.name << ", " << rows << ", "
       << field.shape.back() << ")) {\n"
       << "  case 1: return " << N << "_ERROR_BAD_PERMUTATION;\n"
       << "  case -1: return " << N << "_ERROR_OUT_OF_MEMORY;\n  }\n";
  }
  os << "  " << n << "_context *c = calloc(1, sizeof *c);\n"
     << "  if (!c) return " << N << "_ERROR_OUT_OF_MEMORY;\n"
     << "  c->w = *w;\n";
  for (auto [index, field] : llvm::enumerate(fields)) {
    if (!field.used || cuda)
      continue;
    int64_t fieldSize = field.elementBytes(c.dtype);
    int64_t bytes = fieldSize;
    for (int64_t size : field.shape)
      bytes *= size; // bounded by kMaxWeightBytes: the config was validated
    os << "  if (misaligned(w->" << field.name << ", " << fieldSize
       << ") &&\n      !(c->w." << field.name << " = aligned_copy(w->"
       << field.name << ", " << bytes << "u, &c->owned[" << index << "]))) {\n"
       << "    " << n << "_destroy(c);\n    return " << N
       << "_ERROR_OUT_OF_MEMORY;\n  }\n";
  }
  os << "  *ctx = c;\n  return " << N << "_OK;\n}\n\n";

  auto weightViews = [&](bool routingOnly) {
    emitWeightViews(os, fields, [&](const WeightField &field) {
      return !routingOnly || field.routing;
    });
  };
  auto weightArgs = [&](bool routingOnly) {
    emitWeightArgs(os, fields, [&](const WeightField &field) {
      return !routingOnly || field.routing;
    });
  };

  // The kernel function's call; on CUDA between the runtime's begin and
  // end of a call, which report what failed.
  auto call = [&](const char *kernel, bool routingOnly, const char *outputs,
                  const char *stream, const char *wait) {
    if (cuda)
      os << "  moeCudaBeginCall();\n";
    os << "  _mlir_ciface_" << n << "_" << kernel << "("
       << (cuda ? std::string(stream) + ", " : "") << "&xv";
    weightArgs(routingOnly);
    os << ", " << outputs << ");\n";
    if (cuda)
      os << "  return " << n << "_status(moeCudaEndCall(" << stream << ", "
         << wait << "));\n}\n\n";
    else
      os << "  return " << N << "_OK;\n}\n\n";
  };

  if (c.isShard())
    emitShardEntries(os, c, fields);
  else if (cuda)
    os << "static int " << n << "_forward_on(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y,\n"
       << "    void *stream, int wait) {\n";
  else
    os << "int " << n << "_forward(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y) {\n";
  if (!c.isShard()) {
    emitTokenChecks(os, c, {{"x", elementSize}, {"y", elementSize}});
    os << "  memref2 xv = view2(x, num_tokens, " << c.hiddenSize << ");\n"
       << "  memref2 yv = view2(y, num_tokens, " << c.hiddenSize << ");\n";
    weightViews(false);
    call("forward_kernel", false, "&yv", "stream", "wait");
  }
  if (cuda)
    os << "int " << n << "_forward(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y) {\n"
       << "  return " << n << "_forward_on(ctx, x, num_tokens, y, NULL, 1);\n"
       << "}\n\n"
       << "int " << n << "_forward_async(" << n
       << "_context *ctx, const void *x, int64_t num_tokens, void *y,\n"
       << "    void *stream) {\n"
       << "  return " << n
       << "_forward_on(ctx, x, num_tokens, y, stream, 0);\n}\n\n";

  os << "int " << n << "_route(" << n
     << "_context *ctx, const void *x, int64_t num_tokens,\n"
     << "    int32_t *topk_ids, float *topk_weights) {\n";
  emitTokenChecks(os, c, {{"x", elementSize}, {"topk_ids", 4},
                          {"topk_weights", 4}});
  os << "  memref2 xv = view2(x, num_tokens, " << c.hiddenSize << ");\n"
     << "  memref2 ids = view2(topk_ids, num_tokens, " << c.slotsPerToken()
     << ");\n"
     << "  memref2 weights = view2(topk_weights, num_tokens, "
     << c.slotsPerToken() << ");\n";
  weightViews(true);
  call("route_kernel", true, "&ids, &weights", "NULL", "1");
  return text;
}
