//===- Config.h - One MoE layer as the user describes it --------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The JSON config of SPEC §2, read and validated. Every rule the dialect's
// verifiers enforce is checked here first, so that a bad config is reported
// against its key and file rather than against generated IR.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONFIG_H
#define MOE_COMPILER_CONFIG_H

#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::moe {

enum class DataType { f32, bf16, f16 };

/// How the experts' projection weights are stored ("expert_weights"):
/// in the layer's dtype, in bf16 or f16, or quantized with scales (and
/// zero points) per group of `groupSize` along the reduction, 0 meaning
/// one group per row (docs/QUANTIZATION.md).
struct ExpertWeights {
  enum class Format { dense, bf16, f16, int8, int4, fp8e4m3, mxfp4 };
  Format format = Format::dense;
  int64_t groupSize = 0;
  bool zeroPoints = false;
  /// Each projection's columns in its own order (`<projection>_perm`), as
  /// act-order GPTQ checkpoints store them.
  bool actOrder = false;

  bool isQuantized() const {
    return format != Format::dense && format != Format::bf16 &&
           format != Format::f16;
  }
  /// Two elements a byte.
  bool isNibbles() const {
    return format == Format::int4 || format == Format::mxfp4;
  }
  int64_t bits() const { return isNibbles() ? 4 : 8; }
  /// The groups of a row of `depth` elements.
  int64_t groups(int64_t depth) const {
    return groupSize ? depth / groupSize : 1;
  }
};

/// The element type of one weight array of the C ABI: the config's dtype,
/// or another. fp8e4m3 and e8m0 are bytes holding float8 e4m3fn values
/// and e8m0 exponents.
enum class FieldType {
  data,
  int8,
  uint8,
  int32,
  f32,
  bf16,
  f16,
  fp8e4m3,
  e8m0
};

/// How the experts of one level are chosen: the routing keys of SPEC §2
/// that every level of a hierarchical layer has (token choice, steps 1-6).
struct LevelRouting {
  int64_t numExperts = 0;
  int64_t topK = 0;
  std::string scoring = "softmax";
  bool normalizeTopK = true;
  double routedScalingFactor = 1.0;
  bool routerBias = false;
  bool selectionBias = false;
  int64_t nGroup = 1;
  int64_t topkGroup = 1;
  std::string groupScore = "top2_sum";
  /// docs/FAMILY-RULES.md: the p of step 6's norm, and sparsemixer's ε.
  double normalizeP = 1.0;
  double sparsemixerEps = 0.01;

  bool isSparsemixer() const { return scoring == "sparsemixer"; }
};

/// One MoE layer; its own routing is level 1. A hierarchical layer (the
/// "expert" key) adds `innerLevels`, level 2 first: every expert of a level
/// is an MoE layer routing among the experts of the next. Then
/// `intermediateSize`, `activation` and `gated` are the leaves'.
struct LayerConfig : LevelRouting {
  std::string name;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  DataType dtype = DataType::f32;
  std::string activation = "silu";
  bool gated = true;
  std::string routing = "token_choice";
  double capacityFactor = 0.0;
  int64_t sharedIntermediateSize = 0;
  bool sharedExpertGate = false;
  /// docs/FAMILY-RULES.md's rules of the experts and the output.
  bool routerWeightOnInput = false;
  double swigluAlpha = 1.702;
  double swigluLimit = 7.0;
  double swigluUpOffset = 1.0;
  bool expertBias = false;
  bool outputBias = false;
  std::string target = "cpu";
  /// NVIDIA targets, comma-separated: the library holds a cubin for each.
  /// SPEC §2 says "sm_90"; the default also covers sm_80 (A100), see the
  /// README.
  std::string gpuArch = "sm_80,sm_90";
  std::vector<LevelRouting> innerLevels;
  /// Expert parallelism ("expert_shard"): the library holds leaf experts
  /// [shardFirst, shardFirst + shardCount) only; 0 experts means all.
  int64_t shardFirst = 0;
  int64_t shardCount = 0;
  ExpertWeights expertWeights;

  bool hasSharedExpert() const { return sharedIntermediateSize > 0; }
  bool isExpertChoice() const { return routing == "expert_choice"; }
  bool isHierarchical() const { return !innerLevels.empty(); }
  bool isCUDA() const { return target == "cuda"; }
  bool isShard() const { return shardCount > 0; }
  bool isClampedSwiGLU() const { return activation == "clamped_swiglu"; }
  /// The targets of `gpu_arch`, in order.
  std::vector<std::string> gpuArchs() const;
  /// Width of the per-token routing results: top_k, or every expert for
  /// expert choice, times the top_k of each inner level.
  int64_t slotsPerToken() const {
    int64_t slots = isExpertChoice() ? numExperts : topK;
    for (const LevelRouting &level : innerLevels)
      slots *= level.topK;
    return slots;
  }
  /// The experts of every level in order, level 1 first.
  std::vector<int64_t> expertsPerLevel() const {
    std::vector<int64_t> experts = {numExperts};
    for (const LevelRouting &level : innerLevels)
      experts.push_back(level.numExperts);
    return experts;
  }
  /// The leaf FFNs: the product of every level's num_experts.
  int64_t leafExperts() const {
    int64_t leaves = 1;
    for (int64_t experts : expertsPerLevel())
      leaves *= experts;
    return leaves;
  }
  /// The leaf experts whose FFN weights the library holds.
  int64_t localExperts() const {
    return isShard() ? shardCount : leafExperts();
  }
  /// The config as JSON with every key, defaults included.
  std::string toJSON() const;
};

/// The config's name for a data type ("f32", "bf16", "f16").
const char *dataTypeName(DataType type);

/// Bytes per element of a data type.
int64_t elementBytes(DataType type);

/// The config's name for a weight format ("dense", "int8", ...).
const char *weightFormatName(ExpertWeights::Format format);

/// The largest weight array a config may ask for, in bytes: its offsets
/// then fit 64-bit arithmetic with room to spare.
constexpr int64_t kMaxWeightBytes = int64_t(1) << 48;

/// One field of the ABI's `<name>_weights` struct (SPEC §4).
struct WeightField {
  std::string name;
  bool used;                  // whether this config needs the pointer
  std::vector<int64_t> shape; // row-major, in elements
  bool routing;               // read by route() as well as forward()
  unsigned kernelRank;        // the rank of the kernel's memref argument
  FieldType type = FieldType::data;

  /// Bytes per element in a layer of `dtype`.
  int64_t elementBytes(DataType dtype) const;
  /// The C type of an element in a layer of `dtype`, for the header.
  const char *elementName(DataType dtype) const;

  /// The shape the kernel sees: the leading dimensions of `shape` collapsed
  /// into one, so that it has `kernelRank` dimensions (the same memory).
  std::vector<int64_t> kernelShape() const;

  /// gate_proj, up_proj, down_proj and their biases: the routed experts'
  /// weights, which an expert shard holds its rows of.
  bool isRoutedExpert() const {
    for (const char *projection : {"gate_proj", "up_proj", "down_proj"})
      for (const char *suffix : {"", "_bias", "_scales", "_zeros", "_perm"})
        if (name == std::string(projection) + suffix)
          return true;
    return false;
  }
  /// The shared expert's weights (shared_*).
  bool isSharedExpert() const { return name.rfind("shared_", 0) == 0; }
  /// What an expert shard's combine reads: the shared expert's weights and
  /// the output bias.
  bool isCombineWeight() const {
    return isSharedExpert() || name == "output_bias";
  }
};

/// The weight fields in the ABI's order: the ten of SPEC §4, then, for
/// each inner level l of a hierarchical layer, `level<l>_router`,
/// `level<l>_router_bias` and `level<l>_selection_bias`, then
/// docs/FAMILY-RULES.md's `gate_proj_bias`, `up_proj_bias`,
/// `down_proj_bias` and `output_bias`, then docs/QUANTIZATION.md's
/// `<projection>_scales`, `<projection>_zeros` and `<projection>_perm` of
/// the six projections.
std::vector<WeightField> weightFields(const LayerConfig &config);

/// Parses and validates `text`; errors name `fileName` and the key.
llvm::Expected<LayerConfig> parseLayerConfig(llvm::StringRef text,
                                             llvm::StringRef fileName);

/// Reads `path` ("-": standard input, named `<stdin>` in errors) and
/// parses it.
llvm::Expected<LayerConfig> readLayerConfig(llvm::StringRef path);

} // namespace mlir::moe

#endif // MOE_COMPILER_CONFIG_H
