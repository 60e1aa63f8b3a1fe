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

const char *mlir::moe::weightFormatName(ExpertWeights::Format format) {
  switch (format) {
  case ExpertWeights::Format::dense:
    return "dense";
  case ExpertWeights::Format::bf16:
    return "bf16";
  case ExpertWeights::Format::f16:
    return "f16";
  case ExpertWeights::Format::int8:
    return "int8";
  case ExpertWeights::Format::int4:
    return "int4";
  case ExpertWeights::Format::fp8e4m3:
    return "fp8_e4m3";
  case ExpertWeights::Format::mxfp4:
    return "mxfp4";
  }
  return "?";
}

int64_t WeightField::elementBytes(DataType dtype) const {
  switch (type) {
  case FieldType::data:
    return moe::elementBytes(dtype);
  case FieldType::int8:
  case FieldType::uint8:
  case FieldType::fp8e4m3:
  case FieldType::e8m0:
    return 1;
  case FieldType::bf16:
  case FieldType::f16:
    return 2;
  case FieldType::int32:
  case FieldType::f32:
    return 4;
  }
  return 0;
}

const char *WeightField::elementName(DataType dtype) const {
  switch (type) {
  case FieldType::data:
    return dataTypeName(dtype);
  case FieldType::int8:
    return "int8";
  case FieldType::uint8:
    return "uint8";
  case FieldType::int32:
    return "int32";
  case FieldType::f32:
    return "f32";
  case FieldType::bf16:
    return "bf16";
  case FieldType::f16:
    return "f16";
  case FieldType::fp8e4m3:
    return "float8_e4m3fn";
  case FieldType::e8m0:
    return "e8m0";
  }
  return "?";
}

std::vector<int64_t> WeightField::kernelShape() const {
  if (shape.size() <= kernelRank)
    return shape;
  size_t collapsed = shape.size() - kernelRank + 1;
  int64_t leading = 1;
  for (size_t i = 0; i < collapsed; ++i)
    leading *= shape[i];
  std::vector<int64_t> result = {leading};
  result.insert(result.end(), shape.begin() + collapsed, shape.end());
  return result;
}

std::vector<WeightField>
mlir::moe::weightFields(const LayerConfig &c) {
  int64_t e = c.numExperts, h = c.hiddenSize, f = c.intermediateSize;
  int64_t fs = c.sharedIntermediateSize;
  bool shared = c.hasSharedExpert();
  // Leaf FFNs are stacked over every level: [E1]..[EL][F][H]; a shard's
  // are its own experts, [count][F][H].
  std::vector<int64_t> leaves =
      c.isShard() ? std::vector<int64_t>{c.shardCount} : c.expertsPerLevel();
  auto leafShape = [&](int64_t rows, int64_t columns) {
    std::vector<int64_t> shape = leaves;
    shape.push_back(rows);
    shape.push_back(columns);
    return shape;
  };
  // A projection's `[..][N][K]` weight; quantized, its integers (int4:
  // two per byte) and its scales and zero points per group along K.
  const ExpertWeights &q = c.expertWeights;
  using Format = ExpertWeights::Format;
  FieldType projectionType = FieldType::data, scaleType = FieldType::f32;
  switch (q.format) {
  case Format::dense:
    break;
  case Format::bf16:
    projectionType = FieldType::bf16;
    break;
  case Format::f16:
    projectionType = FieldType::f16;
    break;
  case Format::int8:
    projectionType = FieldType::int8;
    break;
  case Format::int4:
    projectionType = FieldType::uint8;
    break;
  case Format::fp8e4m3:
    projectionType = FieldType::fp8e4m3;
    break;
  case Format::mxfp4:
    projectionType = FieldType::uint8;
    scaleType = FieldType::e8m0;
    break;
  }
  auto packed = [&](std::vector<int64_t> prefix, int64_t n, int64_t k) {
    prefix.push_back(n);
    prefix.push_back(q.isNibbles() ? k / 2 : k);
    return prefix;
  };
  auto grouped = [&](std::vector<int64_t> prefix, int64_t n, int64_t k) {
    prefix.push_back(n);
    prefix.push_back(q.groups(k));
    return prefix;
  };
  struct Projection {
    const char *name;
    bool used;
    std::vector<int64_t> prefix;
    int64_t n, k;
  };
  Projection projections[] = {
      {"gate_proj", c.gated, leaves, f, h},
      {"up_proj", true, leaves, f, h},
      {"down_proj", true, leaves, h, f},
      {"shared_gate_proj", shared && c.gated, {}, fs, h},
      {"shared_up_proj", shared, {}, fs, h},
      {"shared_down_proj", shared, {}, h, fs},
  };
  auto projection = [&](const Projection &p) {
    unsigned rank = p.prefix.empty() ? 2 : 3;
    return WeightField{p.name, p.used, packed(p.prefix, p.n, p.k),
                       false,  rank,   projectionType};
  };
  std::vector<WeightField> fields = {
      {"router", true, {e, h}, true, 2},
      {"router_bias", c.routerBias, {e}, true, 1},
      {"selection_bias", c.selectionBias, {e}, true, 1},
      projection(projections[0]),
      projection(projections[1]),
      projection(projections[2]),
      projection(projections[3]),
      projection(projections[4]),
      projection(projections[5]),
      {"shared_expert_gate", c.sharedExpertGate, {h}, false, 1},
  };
  // Level l's router is one [El][H] matrix per expert of the levels above:
  // [E1]..[El][H]; the kernel sees [E1·…·E(l-1), El, H].
  std::vector<int64_t> experts = {e};
  for (size_t i = 0; i < c.innerLevels.size(); ++i) {
    const LevelRouting &level = c.innerLevels[i];
    experts.push_back(level.numExperts);
    std::string prefix = "level" + std::to_string(i + 2) + "_";
    std::vector<int64_t> router = experts;
    router.push_back(h);
    fields.push_back({prefix + "router", true, router, true, 3});
    fields.push_back({prefix + "router_bias", level.routerBias, experts, true,
                      2});
    fields.push_back({prefix + "selection_bias", level.selectionBias, experts,
                      true, 2});
  }
  std::vector<int64_t> gateBiasShape = leafShape(f, 1);
  gateBiasShape.pop_back();
  std::vector<int64_t> downBiasShape = leafShape(h, 1);
  downBiasShape.pop_back();
  fields.push_back({"gate_proj_bias", c.expertBias && c.gated, gateBiasShape,
                    false, 2});
  fields.push_back({"up_proj_bias", c.expertBias, gateBiasShape, false, 2});
  fields.push_back({"down_proj_bias", c.expertBias, downBiasShape, false, 2});
  fields.push_back({"output_bias", c.outputBias, {h}, false, 1});
  for (const char *suffix : {"_scales", "_zeros"}) {
    bool zeros = std::string(suffix) == "_zeros";
    for (const Projection &p : projections)
      fields.push_back({p.name + std::string(suffix),
                        p.used && q.isQuantized() && (!zeros || q.zeroPoints),
                        grouped(p.prefix, p.n, p.k), false,
                        p.prefix.empty() ? 2u : 3u,
                        zeros ? FieldType::uint8 : scaleType});
  }
  for (const Projection &p : projections) {
    std::vector<int64_t> shape = p.prefix;
    shape.push_back(p.k);
    fields.push_back({p.name + std::string("_perm"), p.used && q.actOrder,
                      shape, false, p.prefix.empty() ? 1u : 2u,
                      FieldType::int32});
  }
  return fields;
}

namespace {
/// Reads keys from one JSON object, remembering the first error, which
/// names the file and the key by its path (`expert.top_k` inside a nested
/// level). Readers of nested levels share their parent's error.
class KeyReader {
public:
  KeyReader(const json &object, llvm::StringRef fileName)
      : object(object), fileName(fileName.str()), error(&ownError) {}

  /// A reader of the object under `key`, whose keys are named `key.*`.
  KeyReader nested(const json &value, const std::string &key) {
    return KeyReader(value, fileName, path + key + ".", error);
  }

  /// `key` as the file names it: its path from the top level.
  std::string pathOf(const std::string &key) const { return path + key; }

  void fail(const std::string &key, const std::string &message) {
    failDocument("'" + pathOf(key) + "' " + message);
  }
  /// An error about the document rather than one key's value.
  void failDocument(const std::string &message) {
    if (error->empty())
      *error = fileName + ": " + message;
  }
  bool failed() const { return !error->empty(); }
  const std::string &message() const { return *error; }

  bool has(const char *key) const { return object.contains(key); }
  const json &at(const char *key) const { return object.at(key); }
  const json &document() const { return object; }

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
  KeyReader(const json &object, std::string fileName, std::string path,
            std::string *error)
      : object(object), fileName(std::move(fileName)), path(std::move(path)),
        error(error) {}

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
  std::string path;
  std::string ownError;
  std::string *error;
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

/// The comma-separated entries of `list`, trimmed.
static std::vector<std::string> splitList(llvm::StringRef list) {
  llvm::SmallVector<llvm::StringRef> parts;
  list.split(parts, ',');
  std::vector<std::string> items;
  for (llvm::StringRef part : parts)
    items.push_back(part.trim().str());
  return items;
}

std::vector<std::string> LayerConfig::gpuArchs() const {
  return splitList(gpuArch);
}

/// `gpu_arch`: NVIDIA targets `sm_XY` (or `sm_XYa`, `sm_XYf`), Turing
/// (sm_75) or newer as CUDA 13's ptxas requires, each named once.
static void checkGPUArchs(KeyReader &reader, const std::string &gpuArch) {
  std::set<std::string> seen;
  for (const std::string &arch : splitList(gpuArch)) {
    llvm::StringRef rest(arch);
    unsigned number = 0;
    bool wellFormed = rest.consume_front("sm_") &&
                      !rest.consumeInteger(10, number) &&
                      (rest.empty() || rest == "a" || rest == "f");
    if (!wellFormed || number < 75)
      return reader.fail("gpu_arch",
                         "must be a comma-separated list of NVIDIA targets "
                         "from sm_75 on, such as \"sm_80,sm_90\", got \"" +
                             gpuArch + "\"");
    if (!seen.insert(arch).second)
      return reader.fail("gpu_arch", "names " + arch + " twice");
  }
}

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

/// The routing keys every level has after its FFN keys, in SPEC §2 order.
static void readSelectionKeys(KeyReader &reader, LevelRouting &level) {
  reader.readString("scoring", level.scoring, false,
                    {"softmax", "sigmoid", "sparsemixer"});
  reader.readNumber("sparsemixer_eps", level.sparsemixerEps);
  if (!reader.failed() && !level.isSparsemixer() &&
      reader.has("sparsemixer_eps"))
    reader.fail("sparsemixer_eps",
                "is only used by \"scoring\": \"sparsemixer\"");
  reader.readBool("normalize_top_k", level.normalizeTopK);
  reader.readNumber("normalize_p", level.normalizeP);
  reader.readNumber("routed_scaling_factor", level.routedScalingFactor);
  reader.readBool("router_bias", level.routerBias);
  reader.readBool("selection_bias", level.selectionBias);
  reader.readInteger("n_group", level.nGroup, false, 1);
  reader.readInteger("topk_group", level.topkGroup, false, 1);
  reader.readString("group_score", level.groupScore, false,
                    {"top2_sum", "max"});
}

/// A level with an "expert" has no FFN of its own: the leaf FFN's keys
/// belong to the innermost level.
static void rejectLeafKey(KeyReader &reader, const char *key) {
  if (!reader.failed() && reader.has(key))
    reader.fail(key, "belongs to the innermost 'expert': a level with an "
                     "'expert' has no FFN of its own");
}

/// The leaf FFN's activation keys.
static void readActivationKeys(KeyReader &reader, LayerConfig &c) {
  reader.readString("activation", c.activation, false,
                    {"silu", "gelu", "gelu_tanh", "relu", "clamped_swiglu"});
  reader.readNumber("swiglu_alpha", c.swigluAlpha);
  reader.readNumber("swiglu_limit", c.swigluLimit);
  reader.readNumber("swiglu_up_offset", c.swigluUpOffset);
  reader.readBool("gated", c.gated);
  if (reader.failed())
    return;
  if (!c.isClampedSwiGLU()) {
    for (const char *key : {"swiglu_alpha", "swiglu_limit", "swiglu_up_offset"})
      if (reader.has(key))
        return reader.fail(key, "is only used by \"activation\": "
                                "\"clamped_swiglu\"");
    return;
  }
  if (!c.gated)
    return reader.fail("activation", "\"clamped_swiglu\" needs a gated FFN "
                                     "('gated': true)");
  if (!std::isfinite(c.swigluAlpha))
    return reader.fail("swiglu_alpha", "must be finite");
  if (!std::isfinite(c.swigluLimit) || c.swigluLimit <= 0)
    return reader.fail("swiglu_limit", "must be finite and positive");
  if (!std::isfinite(c.swigluUpOffset))
    return reader.fail("swiglu_up_offset", "must be finite");
}

static void rejectActivationKeys(KeyReader &reader) {
  for (const char *key : {"activation", "gated", "swiglu_alpha", "swiglu_limit",
                          "swiglu_up_offset"})
    rejectLeafKey(reader, key);
}

/// Keys an inner level takes from the top level.
static const std::set<std::string> kInheritedKeys = {
    "name", "hidden_size", "dtype", "target", "gpu_arch"};
/// Keys of level 1 only: inner levels route by token choice, dropless.
static const std::set<std::string> kTopLevelOnlyKeys = {
    "capacity_factor", "shared_intermediate_size", "shared_expert_gate"};
/// Keys about the whole layer (docs/FAMILY-RULES.md), given once at the top.
static const std::set<std::string> kLayerKeys = {
    "router_weight_on_input", "expert_bias", "output_bias"};
static const std::set<std::string> kInnerLevelKeys = {
    "num_experts", "top_k", "intermediate_size", "activation", "gated",
    "swiglu_alpha", "swiglu_limit", "swiglu_up_offset", "scoring",
    "sparsemixer_eps",
    "normalize_top_k", "normalize_p", "routed_scaling_factor", "router_bias",
    "selection_bias", "n_group", "topk_group", "group_score", "routing",
    "expert"};

/// Reads the inner level under `parent`'s "expert" key, and the levels
/// under it, into `c` (level 2 first).
static void readInnerLevel(KeyReader &parent, LayerConfig &c) {
  const json &value = parent.at("expert");
  if (!value.is_object())
    return parent.fail("expert", "must be an object, got " + value.dump());
  KeyReader reader = parent.nested(value, "expert");
  for (const auto &item : value.items()) {
    const std::string &key = item.key();
    if (kInheritedKeys.count(key))
      return reader.fail(key, "is inherited from the top level: give it "
                              "there only");
    if (kTopLevelOnlyKeys.count(key))
      return reader.fail(key, "is not supported inside 'expert': inner "
                              "levels route by token choice, dropless, "
                              "without shared experts");
    if (kLayerKeys.count(key))
      return reader.fail(key, "is given at the top level only: it applies "
                              "to the whole layer (its leaf experts, its "
                              "output)");
    if (!kInnerLevelKeys.count(key))
      return reader.failDocument("unknown key '" + reader.pathOf(key) + "'");
  }

  LevelRouting level;
  bool leaf = !reader.has("expert");
  if (leaf)
    reader.readInteger("intermediate_size", c.intermediateSize, true, 1);
  else
    rejectLeafKey(reader, "intermediate_size");
  reader.readInteger("num_experts", level.numExperts, true, 1);
  reader.readInteger("top_k", level.topK, true, 1);
  if (leaf)
    readActivationKeys(reader, c);
  else
    rejectActivationKeys(reader);
  readSelectionKeys(reader, level);
  std::string routing = "token_choice";
  reader.readString("routing", routing, false,
                    {"token_choice", "expert_choice"});
  if (!reader.failed() && routing != "token_choice")
    return reader.fail("routing", "must be \"token_choice\" inside "
                                  "'expert': inner levels route by token "
                                  "choice");
  c.innerLevels.push_back(level);
  if (!leaf && !reader.failed())
    readInnerLevel(reader, c);
}

//===----------------------------------------------------------------------===//
// Rules between keys
//===----------------------------------------------------------------------===//

/// SPEC §1 steps 4-6 for one level, reported against its keys (`path` is
/// the level's key prefix, "" or "expert.", ...).
static void checkLevel(KeyReader &reader, const LevelRouting &level,
                       bool tokenChoice, const std::string &path) {
  if (level.numExperts % level.nGroup != 0)
    return reader.fail(path + "n_group",
                       "(" + std::to_string(level.nGroup) + ") must divide '" +
                           path + "num_experts' (" +
                           std::to_string(level.numExperts) + ")");
  if (level.topkGroup > level.nGroup)
    return reader.fail(path + "topk_group",
                       "(" + std::to_string(level.topkGroup) +
                           ") must not exceed '" + path + "n_group' (" +
                           std::to_string(level.nGroup) + ")");
  int64_t groupSize = level.numExperts / level.nGroup;
  if (level.nGroup > 1 && level.groupScore == "top2_sum" && groupSize < 2)
    return reader.fail(path + "group_score",
                       "\"top2_sum\" needs at least 2 experts per group, but "
                       "groups have " +
                           std::to_string(groupSize));
  int64_t allowed = level.topkGroup * groupSize;
  if (tokenChoice && level.topK > allowed)
    return reader.fail(
        path + "top_k",
        "(" + std::to_string(level.topK) +
            ") must not exceed the experts routing may choose from (" +
            std::to_string(allowed) +
            (level.nGroup > 1 ? " in '" + path + "topk_group' groups)"
                              : ")"));
  if (!std::isfinite(level.routedScalingFactor) ||
      level.routedScalingFactor <= 0)
    return reader.fail(path + "routed_scaling_factor",
                       "must be finite and positive");
  if (!std::isfinite(level.normalizeP) || level.normalizeP <= 0)
    return reader.fail(path + "normalize_p", "must be finite and positive");
  if (!level.isSparsemixer())
    return;
  if (!std::isfinite(level.sparsemixerEps) || level.sparsemixerEps < 0)
    return reader.fail(path + "sparsemixer_eps",
                       "must be finite and not negative");
  if (level.selectionBias)
    return reader.fail(path + "selection_bias",
                       "is not used by \"sparsemixer\" scoring, which "
                       "chooses by the logits");
  if (level.nGroup != 1)
    return reader.fail(path + "n_group",
                       "must be 1 for \"sparsemixer\" scoring");
}

/// The rules between keys (SPEC §1 and §2): the same ones moe.layer's
/// verifier enforces, reported against the config's keys.
static void checkConsistency(KeyReader &reader, const LayerConfig &c) {
  if (!isCIdentifier(c.name))
    return reader.fail("name", "must be a C identifier, got \"" + c.name +
                                   "\"");
  checkLevel(reader, c, !c.isExpertChoice(), "");
  if (reader.failed())
    return;
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
  checkGPUArchs(reader, c.gpuArch);
  if (reader.failed())
    return;
  // Expert ids are 32-bit in the routing results.
  if (c.numExperts > INT32_MAX)
    return reader.fail("num_experts", "must not exceed 2147483647: expert ids "
                                      "are 32-bit");
  std::string path;
  double leaves = static_cast<double>(c.numExperts);
  for (const LevelRouting &level : c.innerLevels) {
    path += "expert.";
    checkLevel(reader, level, /*tokenChoice=*/true, path);
    if (reader.failed())
      return;
    // Leaf ids are 32-bit in the routing results.
    leaves *= static_cast<double>(level.numExperts);
    if (leaves > INT32_MAX)
      return reader.fail(path + "num_experts",
                         "makes more than 2147483647 leaf experts");
  }
}

/// "expert_shard": {"first": f, "count": n}, experts [f, f + n) of the
/// leaf experts.
static void readExpertShard(KeyReader &parent, LayerConfig &c) {
  const json &value = parent.at("expert_shard");
  if (!value.is_object())
    return parent.fail("expert_shard",
                       "must be an object {\"first\": ..., \"count\": ...}, "
                       "got " + value.dump());
  KeyReader reader = parent.nested(value, "expert_shard");
  for (const auto &item : value.items())
    if (item.key() != "first" && item.key() != "count")
      return reader.failDocument("unknown key '" + reader.pathOf(item.key()) +
                                 "'");
  reader.readInteger("first", c.shardFirst, /*required=*/true, 0);
  reader.readInteger("count", c.shardCount, /*required=*/true, 1);
}

/// A shard runs its experts on rows that other ranks routed: every rule
/// must route a token from that token alone.
static void checkExpertShard(KeyReader &reader, const LayerConfig &c) {
  if (!c.isShard())
    return;
  int64_t leaves = c.leafExperts();
  if (c.shardFirst >= leaves || c.shardCount > leaves - c.shardFirst) {
    int64_t end;
    std::string endText =
        __builtin_add_overflow(c.shardFirst, c.shardCount, &end)
            ? std::to_string(c.shardFirst) + " + " +
                  std::to_string(c.shardCount)
            : std::to_string(end);
    return reader.fail("expert_shard",
                       "holds experts [" + std::to_string(c.shardFirst) +
                           ", " + endText + "), past the " +
                           std::to_string(leaves) +
                           (c.isHierarchical() ? " leaf" : "") + " experts");
  }
  if (c.isExpertChoice())
    return reader.fail("expert_shard",
                       "cannot be used with \"expert_choice\" routing: each "
                       "expert ranks every token of the batch, which no "
                       "rank sees whole");
  if (c.isCUDA())
    return reader.fail("expert_shard",
                       "is not supported for \"target\": \"cuda\" yet");
}

/// "expert_weights": {"format": ..., "group_size": g, "zero_points": z,
/// "act_order": a} (docs/QUANTIZATION.md).
static void readExpertWeights(KeyReader &parent, ExpertWeights &weights) {
  const json &value = parent.at("expert_weights");
  if (!value.is_object())
    return parent.fail("expert_weights",
                       "must be an object {\"format\": ...}, got " +
                           value.dump());
  KeyReader reader = parent.nested(value, "expert_weights");
  for (const auto &item : value.items())
    if (item.key() != "format" && item.key() != "group_size" &&
        item.key() != "zero_points" && item.key() != "act_order")
      return reader.failDocument("unknown key '" + reader.pathOf(item.key()) +
                                 "'");
  std::string format;
  reader.readString(
      "format", format, /*required=*/true,
      {"dense", "bf16", "f16", "int8", "int4", "fp8_e4m3", "mxfp4"});
  reader.readInteger("group_size", weights.groupSize, false, 0);
  reader.readBool("zero_points", weights.zeroPoints);
  reader.readBool("act_order", weights.actOrder);
  if (reader.failed())
    return;
  using Format = ExpertWeights::Format;
  for (Format candidate :
       {Format::dense, Format::bf16, Format::f16, Format::int8, Format::int4,
        Format::fp8e4m3, Format::mxfp4})
    if (format == weightFormatName(candidate))
      weights.format = candidate;
  if (!weights.isQuantized() && reader.has("group_size"))
    return reader.fail("group_size", "is only used by quantized formats");
  if (weights.zeroPoints && weights.format != Format::int4)
    return reader.fail("zero_points", "is only used by \"int4\"");
  if (weights.actOrder && !weights.isQuantized())
    return reader.fail("act_order", "is only used by quantized formats");
  // MX formats scale blocks of 32 (OCP MX v1.0).
  if (weights.format == Format::mxfp4) {
    if (reader.has("group_size") && weights.groupSize != 32)
      return reader.fail("group_size", "must be 32 for \"mxfp4\", got " +
                                           std::to_string(weights.groupSize));
    weights.groupSize = 32;
  }
}

/// Each projection's reduction must split into whole groups, and int4's
/// into whole bytes.
static void checkExpertWeights(KeyReader &reader, const LayerConfig &c) {
  const ExpertWeights &q = c.expertWeights;
  if (q.format == ExpertWeights::Format::dense)
    return;
  if (c.isCUDA())
    return reader.fail("expert_weights",
                       "is not supported for \"target\": \"cuda\" yet");
  if (!q.isQuantized())
    return;
  std::vector<std::pair<const char *, int64_t>> depths = {
      {"hidden_size", c.hiddenSize}, {"intermediate_size", c.intermediateSize}};
  if (c.hasSharedExpert())
    depths.push_back({"shared_intermediate_size", c.sharedIntermediateSize});
  for (auto [key, depth] : depths) {
    if (q.groupSize && depth % q.groupSize != 0)
      return reader.fail("expert_weights.group_size",
                         "(" + std::to_string(q.groupSize) + ") must divide '" +
                             key + "' (" + std::to_string(depth) + ")");
    int64_t group = q.groupSize ? q.groupSize : depth;
    if (q.isNibbles() && group % 2 != 0)
      return reader.fail(
          q.groupSize ? "expert_weights.group_size" : "expert_weights.format",
          "\"" + std::string(weightFormatName(q.format)) +
              "\" packs two values a byte within a group, "
              "so groups must be even, but '" +
              std::string(key) + "' gives groups of " + std::to_string(group));
  }
}

/// Sizes whose product no 64-bit offset can hold would make the kernels'
/// address arithmetic wrap.
static void checkWeightSizes(KeyReader &reader, const LayerConfig &c) {
  for (const WeightField &field : weightFields(c)) {
    if (!field.used)
      continue;
    int64_t bytes = field.elementBytes(c.dtype);
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

  static const std::set<std::string> known = {"name",
                                              "hidden_size",
                                              "intermediate_size",
                                              "num_experts",
                                              "top_k",
                                              "dtype",
                                              "activation",
                                              "gated",
                                              "scoring",
                                              "normalize_top_k",
                                              "routed_scaling_factor",
                                              "router_bias",
                                              "selection_bias",
                                              "n_group",
                                              "topk_group",
                                              "group_score",
                                              "routing",
                                              "capacity_factor",
                                              "shared_intermediate_size",
                                              "shared_expert_gate",
                                              "target",
                                              "gpu_arch",
                                              "expert",
                                              "expert_shard",
                                              "normalize_p",
                                              "sparsemixer_eps",
                                              "swiglu_alpha",
                                              "swiglu_limit",
                                              "swiglu_up_offset",
                                              "router_weight_on_input",
                                              "expert_bias",
                                              "output_bias",
                                              "expert_weights"};
  for (const auto &item : object.items())
    if (!known.count(item.key()))
      return error(fileName.str() + ": unknown key '" + item.key() + "'");

  LayerConfig c;
  KeyReader reader(object, fileName);
  bool hierarchical = reader.has("expert");
  std::string dtype = "f32";
  reader.readString("name", c.name, /*required=*/true);
  reader.readInteger("hidden_size", c.hiddenSize, true, 1);
  if (hierarchical)
    rejectLeafKey(reader, "intermediate_size");
  else
    reader.readInteger("intermediate_size", c.intermediateSize, true, 1);
  reader.readInteger("num_experts", c.numExperts, true, 1);
  reader.readInteger("top_k", c.topK, true, 1);
  reader.readString("dtype", dtype, false, {"f32", "bf16", "f16"});
  if (hierarchical)
    rejectActivationKeys(reader);
  else
    readActivationKeys(reader, c);
  readSelectionKeys(reader, c);
  reader.readString("routing", c.routing, false,
                    {"token_choice", "expert_choice"});
  reader.readNumber("capacity_factor", c.capacityFactor);
  reader.readInteger("shared_intermediate_size", c.sharedIntermediateSize,
                     false, 0);
  reader.readBool("shared_expert_gate", c.sharedExpertGate);
  reader.readBool("router_weight_on_input", c.routerWeightOnInput);
  reader.readBool("expert_bias", c.expertBias);
  reader.readBool("output_bias", c.outputBias);
  reader.readString("target", c.target, false, {"cpu", "cuda"});
  reader.readString("gpu_arch", c.gpuArch, false);
  if (hierarchical && !reader.failed())
    readInnerLevel(reader, c);
  if (reader.has("expert_shard") && !reader.failed())
    readExpertShard(reader, c);
  if (reader.has("expert_weights") && !reader.failed())
    readExpertWeights(reader, c.expertWeights);
  if (!reader.failed()) {
    c.dtype = dtype == "bf16"  ? DataType::bf16
              : dtype == "f16" ? DataType::f16
                               : DataType::f32;
    checkConsistency(reader, c);
    if (!reader.failed())
      checkExpertShard(reader, c);
    if (!reader.failed())
      checkExpertWeights(reader, c);
    if (!reader.failed())
      checkWeightSizes(reader, c);
  }
  if (reader.failed())
    return error(reader.message());
  return c;
}

llvm::Expected<LayerConfig> mlir::moe::readLayerConfig(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(path, /*IsText=*/true);
  if (!buffer)
    return llvm::createStringError(buffer.getError(),
                                   path.str() + ": cannot read: " +
                                       buffer.getError().message());
  return parseLayerConfig((*buffer)->getBuffer(),
                          path == "-" ? llvm::StringRef("<stdin>") : path);
}

/// One level's routing keys, defaults included.
static json levelJSON(const LevelRouting &level) {
  json object = {{"num_experts", level.numExperts},
          {"top_k", level.topK},
          {"scoring", level.scoring},
          {"normalize_top_k", level.normalizeTopK},
          {"routed_scaling_factor", level.routedScalingFactor},
          {"router_bias", level.routerBias},
          {"selection_bias", level.selectionBias},
          {"n_group", level.nGroup},
          {"topk_group", level.topkGroup},
          {"group_score", level.groupScore},
          {"normalize_p", level.normalizeP}};
  if (level.isSparsemixer())
    object["sparsemixer_eps"] = level.sparsemixerEps;
  return object;
}

std::string LayerConfig::toJSON() const {
  json object = levelJSON(*this);
  object.update({{"name", name},
                 {"hidden_size", hiddenSize},
                 {"dtype", dataTypeName(dtype)},
                 {"routing", routing},
                 {"capacity_factor", capacityFactor},
                 {"shared_intermediate_size", sharedIntermediateSize},
                 {"shared_expert_gate", sharedExpertGate},
                 {"router_weight_on_input", routerWeightOnInput},
                 {"expert_bias", expertBias},
                 {"output_bias", outputBias},
                 {"target", target},
                 {"gpu_arch", gpuArch}});
  // The leaf FFN's keys go in the innermost level, each inner level in the
  // "expert" of the one above.
  json *leaf = &object;
  for (const LevelRouting &level : innerLevels) {
    (*leaf)["expert"] = levelJSON(level);
    leaf = &(*leaf)["expert"];
  }
  leaf->update({{"intermediate_size", intermediateSize},
                {"activation", activation},
                {"gated", gated}});
  if (isClampedSwiGLU())
    leaf->update({{"swiglu_alpha", swigluAlpha},
                  {"swiglu_limit", swigluLimit},
                  {"swiglu_up_offset", swigluUpOffset}});
  if (isShard())
    object["expert_shard"] = {{"first", shardFirst}, {"count", shardCount}};
  if (expertWeights.format != ExpertWeights::Format::dense) {
    json &weights = object["expert_weights"];
    weights = {{"format", weightFormatName(expertWeights.format)}};
    if (expertWeights.isQuantized())
      weights["group_size"] = expertWeights.groupSize;
    if (expertWeights.format == ExpertWeights::Format::int4)
      weights["zero_points"] = expertWeights.zeroPoints;
    if (expertWeights.isQuantized())
      weights["act_order"] = expertWeights.actOrder;
  }
  return object.dump();
}
