//===- Config.cpp - Reading and validating SPEC §2 configs ----------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/Config.h"

#include "llvm/Support/MemoryBuffer.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

using namespace mlir::moe;
using json = nlohmann::json;

const char *mlir::moe::dataTypeName(DataType type) {
  switch (type) {
  case DataType::f32:
    return "f32";
  case DataType::bf16:
    return "bf16";
  case DataType::f16:
    return "f16";
  }
  return "?";
}

int64_t mlir::moe::elementBytes(DataType type) {
  return type == DataType::f32 ? 4 : 2;
}

std::vector<WeightField>
mlir::moe::weightFields(const LayerConfig &c) {
  int64_t e = c.numExperts, h = c.hiddenSize, f = c.intermediateSize;
  int64_t fs = c.sharedIntermediateSize;
  bool shared = c.hasSharedExpert();
  return {
      {"router", true, {e, h}},
      {"router_bias", c.routerBias, {e}},
      {"selection_bias", c.selectionBias, {e}},
      {"gate_proj", c.gated, {e, f, h}},
      {"up_proj", true, {e, f, h}},
      {"down_proj", true, {e, h, f}},
      {"shared_gate_proj", shared && c.gated, {fs, h}},
      {"shared_up_proj", shared, {fs, h}},
      {"shared_down_proj", shared, {h, fs}},
      {"shared_expert_gate", c.sharedExpertGate, {h}},
  };
}

namespace {
/// Reads keys from one JSON object, remembering the first error, which
/// names the file and the key.
class KeyReader {
public:
  KeyReader(const json &object, llvm::StringRef fileName)
      : object(object), fileName(fileName.str()) {}

  void fail(const std::string &key, const std::string &message) {
    if (error.empty())
      error = fileName + ": '" + key + "' " + message;
  }
  bool failed() const { return !error.empty(); }
  const std::string &message() const { return error; }

  bool has(const char *key) const { return object.contains(key); }

  void readString(const char *key, std::string &out, bool required,
                  std::initializer_list<const char *> allowed = {}) {
    if (!present(key, required))
      return;
    const json &value = object.at(key);
    if (!value.is_string())
      return fail(key, "must be a string, got " + value.dump());
    std::string text = value.get<std::string>();
    if (allowed.size() != 0) {
      std::string choices;
      for (const char *choice : allowed) {
        if (text == choice) {
          out = text;
          return;
        }
        choices += std::string(choices.empty() ? "" : ", ") + "\"" + choice +
                   "\"";
      }
      return fail(key, "must be one of " + choices + ", got \"" + text + "\"");
    }
    out = text;
  }

  void readInteger(const char *key, int64_t &out, bool required,
                   int64_t minimum) {
    if (!present(key, required))
      return;
    const json &value = object.at(key);
    if (!value.is_number_integer())
      return fail(key, "must be an integer, got " + value.dump());
    int64_t number = value.get<int64_t>();
    if (number < minimum)
      return fail(key, "must be at least " + std::to_string(minimum) +
                           ", got " + std::to_string(number));
    out = number;
  }

  void readNumber(const char *key, double &out) {
    if (!present(key, false))
      return;
    const json &value = object.at(key);
    if (!value.is_number())
      return fail(key, "must be a number, got " + value.dump());
    out = value.get<double>();
  }

  void readBool(const char *key, bool &out) {
    if (!present(key, false))
      return;
    const json &value = object.at(key);
    if (!value.is_boolean())
      return fail(key, "must be true or false, got " + value.dump());
    out = value.get<bool>();
  }

private:
  bool present(const char *key, bool required) {
    if (failed())
      return false;
    if (object.contains(key))
      return true;
    if (required)
      fail(key, "is required");
    return false;
  }

  const json &object;
  std::string fileName;
  std::string error;
};
} // namespace

static bool isCIdentifier(const std::string &name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  return true;
}

/// The rules between keys (SPEC §1 and §2): the same ones moe.layer's
/// verifier enforces, reported against the config's keys.
static void checkConsistency(KeyReader &reader, const LayerConfig &c) {
  if (!isCIdentifier(c.name))
    return reader.fail("name", "must be a C identifier, got \"" + c.name +
                                   "\"");
  if (c.numExperts % c.nGroup != 0)
    return reader.fail("n_group", "(" + std::to_string(c.nGroup) +
                                      ") must divide 'num_experts' (" +
                                      std::to_string(c.numExperts) + ")");
  if (c.topkGroup > c.nGroup)
    return reader.fail("topk_group", "(" + std::to_string(c.topkGroup) +
                                         ") must not exceed 'n_group' (" +
                                         std::to_string(c.nGroup) + ")");
  int64_t groupSize = c.numExperts / c.nGroup;
  if (c.nGroup > 1 && c.groupScore == "top2_sum" && groupSize < 2)
    return reader.fail("group_score",
                       "\"top2_sum\" needs at least 2 experts per group, but "
                       "groups have " +
                           std::to_string(groupSize));
  int64_t allowed = c.topkGroup * groupSize;
  if (!c.isExpertChoice() && c.topK > allowed)
    return reader.fail(
        "top_k", "(" + std::to_string(c.topK) +
                     ") must not exceed the experts routing may choose from (" +
                     std::to_string(allowed) +
                     (c.nGroup > 1 ? " in 'topk_group' groups)" : ")"));
  if (!std::isfinite(c.routedScalingFactor) || c.routedScalingFactor <= 0)
    return reader.fail("routed_scaling_factor", "must be finite and positive");
  if (!std::isfinite(c.capacityFactor) || c.capacityFactor < 0)
    return reader.fail("capacity_factor", "must be finite and not negative");
  if (c.isExpertChoice()) {
    if (c.capacityFactor <= 0)
      return reader.fail("capacity_factor",
                         "must be positive for \"expert_choice\" routing");
    if (c.scoring != "softmax")
      return reader.fail("scoring",
                         "must be \"softmax\" for \"expert_choice\" routing");
    if (c.nGroup != 1)
      return reader.fail("n_group", "must be 1 for \"expert_choice\" routing");
    if (c.selectionBias)
      return reader.fail("selection_bias",
                         "is not used by \"expert_choice\" routing");
  }
  if (c.sharedExpertGate && !c.hasSharedExpert())
    return reader.fail("shared_expert_gate",
                       "needs a shared expert ('shared_intermediate_size' > 0)");
  if (c.target != "cpu")
    return reader.fail("target", "\"" + c.target +
                                     "\" is not supported by this build of "
                                     "moe-compile (only \"cpu\")");
}

/// Sizes whose product no 64-bit offset can hold would make the kernels'
/// address arithmetic wrap.
static void checkWeightSizes(KeyReader &reader, const LayerConfig &c) {
  for (const WeightField &field : weightFields(c)) {
    if (!field.used)
      continue;
    int64_t bytes = elementBytes(c.dtype);
    for (int64_t size : field.shape)
      if (__builtin_mul_overflow(bytes, size, &bytes) ||
          bytes > kMaxWeightBytes)
        return reader.fail(field.name, "would need more than 2^48 bytes: "
                                       "the sizes are too large");
  }
}

llvm::Expected<LayerConfig>
mlir::moe::parseLayerConfig(llvm::StringRef text, llvm::StringRef fileName) {
  auto error = [&](const std::string &message) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
  };
  json object = json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (object.is_discarded())
    return error(fileName.str() + ": not valid JSON");
  if (!object.is_object())
    return error(fileName.str() + ": must hold one JSON object");

  static const std::set<std::string> known = {
      "name", "hidden_size", "intermediate_size", "num_experts", "top_k",
      "dtype", "activation", "gated", "scoring", "normalize_top_k",
      "routed_scaling_factor", "router_bias", "selection_bias", "n_group",
      "topk_group", "group_score", "routing", "capacity_factor",
      "shared_intermediate_size", "shared_expert_gate", "target", "gpu_arch"};
  for (const auto &item : object.items())
    if (!known.count(item.key()))
      return error(fileName.str() + ": unknown key '" + item.key() + "'");

  LayerConfig c;
  KeyReader reader(object, fileName);
  std::string dtype = "f32";
  reader.readString("name", c.name, /*required=*/true);
  reader.readInteger("hidden_size", c.hiddenSize, true, 1);
  reader.readInteger("intermediate_size", c.intermediateSize, true, 1);
  reader.readInteger("num_experts", c.numExperts, true, 1);
  reader.readInteger("top_k", c.topK, true, 1);
  reader.readString("dtype", dtype, false, {"f32", "bf16", "f16"});
  reader.readString("activation", c.activation, false,
                    {"silu", "gelu", "gelu_tanh", "relu"});
  reader.readBool("gated", c.gated);
  reader.readString("scoring", c.scoring, false, {"softmax", "sigmoid"});
  reader.readBool("normalize_top_k", c.normalizeTopK);
  reader.readNumber("routed_scaling_factor", c.routedScalingFactor);
  reader.readBool("router_bias", c.routerBias);
  reader.readBool("selection_bias", c.selectionBias);
  reader.readInteger("n_group", c.nGroup, false, 1);
  reader.readInteger("topk_group", c.topkGroup, false, 1);
  reader.readString("group_score", c.groupScore, false, {"top2_sum", "max"});
  reader.readString("routing", c.routing, false,
                    {"token_choice", "expert_choice"});
  reader.readNumber("capacity_factor", c.capacityFactor);
  reader.readInteger("shared_intermediate_size", c.sharedIntermediateSize,
                     false, 0);
  reader.readBool("shared_expert_gate", c.sharedExpertGate);
  reader.readString("target", c.target, false, {"cpu", "cuda"});
  reader.readString("gpu_arch", c.gpuArch, false);
  if (!reader.failed()) {
    c.dtype = dtype == "bf16"  ? DataType::bf16
              : dtype == "f16" ? DataType::f16
                               : DataType::f32;
    checkConsistency(reader, c);
    if (!reader.failed())
      checkWeightSizes(reader, c);
  }
  if (reader.failed())
    return error(reader.message());
  return c;
}

llvm::Expected<LayerConfig> mlir::moe::readLayerConfig(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return llvm::createStringError(buffer.getError(),
                                   path.str() + ": cannot read: " +
                                       buffer.getError().message());
  return parseLayerConfig((*buffer)->getBuffer(), path);
}

std::string LayerConfig::toJSON() const {
  json object = {
      {"name", name},
      {"hidden_size", hiddenSize},
      {"intermediate_size", intermediateSize},
      {"num_experts", numExperts},
      {"top_k", topK},
      {"dtype", dataTypeName(dtype)},
      {"activation", activation},
      {"gated", gated},
      {"scoring", scoring},
      {"normalize_top_k", normalizeTopK},
      {"routed_scaling_factor", routedScalingFactor},
      {"router_bias", routerBias},
      {"selection_bias", selectionBias},
      {"n_group", nGroup},
      {"topk_group", topkGroup},
      {"group_score", groupScore},
      {"routing", routing},
      {"capacity_factor", capacityFactor},
      {"shared_intermediate_size", sharedIntermediateSize},
      {"shared_expert_gate", sharedExpertGate},
      {"target", target},
      {"gpu_arch", gpuArch}};
  return object.dump();
}
