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

struct LayerConfig {
  std::string name;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numExperts = 0;
  int64_t topK = 0;
  DataType dtype = DataType::f32;
  std::string activation = "silu";
  bool gated = true;
  std::string scoring = "softmax";
  bool normalizeTopK = true;
  double routedScalingFactor = 1.0;
  bool routerBias = false;
  bool selectionBias = false;
  int64_t nGroup = 1;
  int64_t topkGroup = 1;
  std::string groupScore = "top2_sum";
  std::string routing = "token_choice";
  double capacityFactor = 0.0;
  int64_t sharedIntermediateSize = 0;
  bool sharedExpertGate = false;
  std::string target = "cpu";
  std::string gpuArch = "sm_90";

  bool hasSharedExpert() const { return sharedIntermediateSize > 0; }
  bool isExpertChoice() const { return routing == "expert_choice"; }
  /// Width of the per-token routing results: top_k, or every expert for
  /// expert choice.
  int64_t slotsPerToken() const {
    return isExpertChoice() ? numExperts : topK;
  }
  /// The config as JSON with every key, defaults included.
  std::string toJSON() const;
};

/// The config's name for a data type ("f32", "bf16", "f16").
const char *dataTypeName(DataType type);

/// Bytes per element of a data type.
int64_t elementBytes(DataType type);

/// The largest weight array a config may ask for, in bytes: its offsets
/// then fit 64-bit arithmetic with room to spare.
constexpr int64_t kMaxWeightBytes = int64_t(1) << 48;

/// One field of the ABI's `<name>_weights` struct (SPEC §4).
struct WeightField {
  const char *name;
  bool used;                  // whether this config needs the pointer
  std::vector<int64_t> shape; // row-major, in elements
};

/// The ten weight fields in the ABI's order.
std::vector<WeightField> weightFields(const LayerConfig &config);

/// Parses and validates `text`; errors name `fileName` and the key.
llvm::Expected<LayerConfig> parseLayerConfig(llvm::StringRef text,
                                             llvm::StringRef fileName);

/// Reads `path` and parses it.
llvm::Expected<LayerConfig> readLayerConfig(llvm::StringRef path);

} // namespace mlir::moe

#endif // MOE_COMPILER_CONFIG_H
