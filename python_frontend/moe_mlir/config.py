"""The SPEC §2 config as a Python object.

Validation follows moe-compile's rules and wording (lib/Compiler/Config.cpp),
so a config this module accepts is one moe-compile accepts, and an error reads
the same in both: `<source>: '<key>' <message>`.
"""

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import reference

# In SPEC §2 order; also the order moe-compile reads them, which decides
# which error is reported first.
KEYS = (
    "name", "hidden_size", "intermediate_size", "num_experts", "top_k",
    "dtype", "activation", "gated", "scoring", "normalize_top_k",
    "routed_scaling_factor", "router_bias", "selection_bias", "n_group",
    "topk_group", "group_score", "routing", "capacity_factor",
    "shared_intermediate_size", "shared_expert_gate", "target", "gpu_arch",
)
REQUIRED = ("name", "hidden_size", "intermediate_size", "num_experts", "top_k")

# Hierarchical MoE: "expert" holds the inner level, an object of these keys
# (and "expert" again). The leaf FFN's keys belong to the innermost level;
# the inherited keys to the top level; inner levels route by token choice,
# dropless, without shared experts.
LEVEL_KEYS = (
    "intermediate_size", "num_experts", "top_k", "activation", "gated", "scoring",
    "normalize_top_k", "routed_scaling_factor", "router_bias", "selection_bias",
    "n_group", "topk_group", "group_score", "routing", "expert",
)
LEAF_KEYS = ("intermediate_size", "activation", "gated")
INHERITED_KEYS = ("name", "hidden_size", "dtype", "target", "gpu_arch")
TOP_LEVEL_ONLY_KEYS = ("capacity_factor", "shared_intermediate_size", "shared_expert_gate")
# The routing keys of a level (SPEC §1 steps 1-6), in reading order.
SELECTION_KEYS = ("scoring", "normalize_top_k", "routed_scaling_factor", "router_bias",
                  "selection_bias", "n_group", "topk_group", "group_score")
_LEAF_RULE = "belongs to the innermost 'expert': a level with an 'expert' has no FFN of its own"

# key -> (kind, minimum or allowed values)
_RULES = {
    "name": ("string", None),
    "hidden_size": ("integer", 1),
    "intermediate_size": ("integer", 1),
    "num_experts": ("integer", 1),
    "top_k": ("integer", 1),
    "dtype": ("string", ("f32", "bf16", "f16")),
    "activation": ("string", ("silu", "gelu", "gelu_tanh", "relu")),
    "gated": ("bool", None),
    "scoring": ("string", ("softmax", "sigmoid")),
    "normalize_top_k": ("bool", None),
    "routed_scaling_factor": ("number", None),
    "router_bias": ("bool", None),
    "selection_bias": ("bool", None),
    "n_group": ("integer", 1),
    "topk_group": ("integer", 1),
    "group_score": ("string", ("top2_sum", "max")),
    "routing": ("string", ("token_choice", "expert_choice")),
    "capacity_factor": ("number", None),
    "shared_intermediate_size": ("integer", 0),
    "shared_expert_gate": ("bool", None),
    "target": ("string", ("cpu", "cuda")),
    "gpu_arch": ("string", None),
}

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_GPU_ARCH = re.compile(r"sm_([0-9]+)[af]?\Z")


class ConfigError(ValueError):
    """An invalid config. `key` is the offending key (None when the whole
    document is wrong), `source` the file or "<config>"."""

    def __init__(self, source, key, message):
        self.source, self.key, self.message = source, key, message
        if key is None:
            text = f"{source}: {message}"
        else:
            text = f"{source}: '{key}' {message}"
        super().__init__(text)


def _dump(value):
    """A value as moe-compile quotes it in messages (JSON)."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _check_value(source, key, value, path=""):
    """`value` checked against `key`'s type and range; returns it normalized
    (numbers as float). Errors name the key as `path + key`."""
    kind, rule = _RULES[key]
    key = path + key
    if kind == "string":
        if not isinstance(value, str):
            raise ConfigError(source, key, f"must be a string, got {_dump(value)}")
        if rule is not None and value not in rule:
            choices = ", ".join(f'"{c}"' for c in rule)
            raise ConfigError(source, key, f'must be one of {choices}, got "{value}"')
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"must be an integer, got {_dump(value)}")
        if value < rule:
            raise ConfigError(source, key, f"must be at least {rule}, got {value}")
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"must be a number, got {_dump(value)}")
        return float(value)
    if not isinstance(value, bool):
        raise ConfigError(source, key, f"must be true or false, got {_dump(value)}")
    return value


@dataclass(frozen=True)
class MoEConfig:
    """One MoE layer (SPEC §2). Fields are the config keys; constructing one
    validates it and raises ConfigError naming the key."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_experts: int
    top_k: int
    dtype: str = "f32"
    activation: str = "silu"
    gated: bool = True
    scoring: str = "softmax"
    normalize_top_k: bool = True
    routed_scaling_factor: float = 1.0
    router_bias: bool = False
    selection_bias: bool = False
    n_group: int = 1
    topk_group: int = 1
    group_score: str = "top2_sum"
    routing: str = "token_choice"
    capacity_factor: float = 0.0
    shared_intermediate_size: int = 0
    shared_expert_gate: bool = False
    target: str = "cpu"
    gpu_arch: str = "sm_80,sm_90"
    # Hierarchical MoE: the inner level (a dict of LEVEL_KEYS, nested through
    # "expert"), kept with every default filled in. Then intermediate_size,
    # activation and gated mirror the innermost level's (what is passed for
    # them is replaced).
    expert: Optional[dict] = dataclasses.field(default=None, hash=False)
    # Expert parallelism: {"first": f, "count": n}, the library then holds
    # leaf experts [f, f + n) only (docs/EXPERT_PARALLEL.md).
    expert_shard: Optional[dict] = dataclasses.field(default=None, hash=False)

    def __post_init__(self):
        self._validate("<config>")

    def _validate(self, source):
        if self.expert is not None:
            expert, leaf = _read_level(source, self.expert, "expert.")
            object.__setattr__(self, "expert", expert)
            for key in LEAF_KEYS:
                object.__setattr__(self, key, leaf[key])
        for key in KEYS:
            object.__setattr__(self, key, _check_value(source, key, getattr(self, key)))
        if self.expert_shard is not None:
            object.__setattr__(self, "expert_shard",
                               _read_expert_shard(source, self.expert_shard))
        _check_consistency(source, self)
        _check_expert_shard(source, self)

    # -- conversions ---------------------------------------------------------

    @classmethod
    def from_dict(cls, data, source="<config>"):
        """A config from a dict of SPEC §2 keys; checks run in moe-compile's
        order so the first error reported is the same one."""
        if not isinstance(data, dict):
            raise ConfigError(source, None, "must hold one JSON object")
        # moe-compile walks the keys sorted, so the first unknown one it
        # names is the alphabetically first.
        for key in sorted(data):
            if key not in _RULES and key not in ("expert", "expert_shard"):
                raise ConfigError(source, None, f"unknown key '{key}'")
        hierarchical = "expert" in data
        for key in KEYS:
            if hierarchical and key in LEAF_KEYS:
                if key in data:
                    raise ConfigError(source, key, _LEAF_RULE)
            elif key in data:
                _check_value(source, key, data[key])
            elif key in REQUIRED:
                raise ConfigError(source, key, "is required")
        leaf = {}
        if hierarchical:
            _, leaf = _read_level(source, data["expert"], "expert.")
        config = cls.__new__(cls)
        for field in dataclasses.fields(cls):
            value = leaf.get(field.name, data.get(field.name, field.default))
            object.__setattr__(config, field.name, value)
        config._validate(source)
        return config

    @classmethod
    def from_json(cls, text_or_path):
        """A config from JSON text or from a file path (str or Path)."""
        source = "<config>"
        text = text_or_path
        if isinstance(text_or_path, Path) or (
                isinstance(text_or_path, str) and not text_or_path.lstrip().startswith("{")):
            source = str(text_or_path)
            try:
                text = Path(text_or_path).read_text()
            except OSError as e:
                raise ConfigError(source, None, f"cannot read: {e.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(source, None, "not valid JSON") from None
        return cls.from_dict(data, source)

    def to_dict(self):
        """Every key, defaults included, in SPEC §2 order; a hierarchical
        config has its levels under "expert", the leaf FFN's keys in the
        innermost only."""
        if self.expert is None:
            data = {key: getattr(self, key) for key in KEYS}
        else:
            data = {key: getattr(self, key) for key in KEYS if key not in LEAF_KEYS}
            data["expert"] = copy.deepcopy(self.expert)
        if self.expert_shard is not None:
            data["expert_shard"] = dict(self.expert_shard)
        return data

    def to_json(self, indent=None):
        return json.dumps(self.to_dict(), indent=indent)

    def replace(self, **changes):
        """A copy with some keys changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- derived -------------------------------------------------------------

    @property
    def has_shared_expert(self):
        return self.shared_intermediate_size > 0

    @property
    def levels(self):
        """[level 1, level 2, ...]: this config's routing keys, then each inner
        level's (one level when flat)."""
        out = [self.to_dict()]
        while "expert" in out[-1]:
            out.append(out[-1]["expert"])
        return out

    @property
    def route_width(self):
        """Columns of route()'s outputs: top_k, or every expert for expert
        choice, times every inner level's top_k."""
        return reference.route_width(self.to_dict())

    def weight_keys(self):
        """The fields of the ABI's weights struct, in order (SPEC §4, then
        three per inner level)."""
        return reference.weight_keys(self.to_dict())

    def weight_shapes(self):
        """{ABI field: shape} for every weight this layer uses (SPEC §4)."""
        return reference.weight_shapes(self.to_dict())

    def to_mlir(self):
        """The layer as `moe` dialect text: a func.func over tensors holding
        one moe.layer, with a dynamic token dimension. Weights take the
        kernel's shapes: stacked levels are collapsed into the leading
        dimension ([E1·E2, F, H], level routers [E1·…·E(l-1), El, H])."""
        if self.expert_shard is not None:
            raise ValueError(f"config '{self.name}' is an expert shard, which has no "
                             "moe.layer: moe-compile --emit=mlir shows its kernels")
        et = self.dtype
        def tensor(shape):
            return "tensor<" + "x".join(str(d) for d in shape) + f"x{et}>"
        def kernel_shape(key, shape):
            if key.startswith("level"):
                rank = 3 if key.endswith("_router") else 2
            elif key in ("gate_proj", "up_proj", "down_proj"):
                rank = 3
            else:
                return shape
            lead = len(shape) - rank + 1
            return (math.prod(shape[:lead]),) + tuple(shape[lead:])
        used = self.weight_shapes()
        shapes = {key: kernel_shape(key, used[key]) for key in self.weight_keys()
                  if key in used}
        io = tensor(("?", self.hidden_size))
        args = [f"%x: {io}"] + [f"%{k}: {tensor(s)}" for k, s in shapes.items()]
        groups = {"level_routers": "router", "level_router_biases": "router_bias",
                  "level_selection_biases": "selection_bias"}
        operands = []
        for key in ("router", "router_bias", "selection_bias"):
            if key in shapes:
                operands.append(f"{key}(%{key} : {tensor(shapes[key])})")
        for group, suffix in groups.items():
            keys = [k for k in shapes if k.startswith("level") and k.endswith("_" + suffix)]
            if keys:
                operands.append(f"{group}({', '.join('%' + k for k in keys)} : "
                                f"{', '.join(tensor(shapes[k]) for k in keys)})")
        operands += [f"{k}(%{k} : {tensor(s)})" for k, s in shapes.items()
                     if k.endswith("proj") or k == "shared_expert_gate"]
        operands = " ".join(operands)
        attrs = [f"top_k = {self.top_k} : i64"]
        if self.scoring != "softmax":
            attrs.append(f"scoring = #moe.scoring<{self.scoring}>")
        if not self.normalize_top_k:
            attrs.append("normalize_top_k = false")
        if self.routed_scaling_factor != 1.0:
            attrs.append(f"routed_scaling_factor = {_float(self.routed_scaling_factor)} : f32")
        if self.n_group != 1:
            attrs.append(f"n_group = {self.n_group} : i64")
        if self.topk_group != 1:
            attrs.append(f"topk_group = {self.topk_group} : i64")
        if self.group_score != "top2_sum":
            attrs.append(f"group_score = #moe.group_score<{self.group_score}>")
        if self.routing != "token_choice":
            attrs.append(f"routing = #moe.routing<{self.routing}>")
        if self.capacity_factor != 0.0:
            attrs.append(f"capacity_factor = {_float(self.capacity_factor)} : f64")
        if self.activation != "silu":
            attrs.append(f"activation = #moe.activation<{self.activation}>")
        if self.expert is not None:
            attrs.append("levels = [" + ", ".join(_level_attr(level)
                                                  for level in self.levels[1:]) + "]")
        return (
            f"func.func @{self.name}({', '.join(args)}) -> {io} {{\n"
            f"  %y = moe.layer %x {operands}\n"
            f"         {{{', '.join(attrs)}}} : {io} -> {io}\n"
            f"  return %y : {io}\n"
            "}\n")


def _float(value):
    """A float literal MLIR's lexer takes: it needs a '.' before any exponent."""
    text = repr(float(value))
    if "." not in text:
        mantissa, _, exponent = text.partition("e")
        text = mantissa + ".0" + ("e" + exponent if exponent else "")
    return text


def _level_attr(level):
    """An inner level as a #moe.level attribute (defaults left out)."""
    params = [f"top_k = {level['top_k']}"]
    for key in SELECTION_KEYS:
        value = level[key]
        if value == reference.LEVEL_DEFAULTS[key]:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float):
            value = _float(value)
        params.append(f"{key} = {value}")
    return "#moe.level<" + ", ".join(params) + ">"


def _read_level(source, value, path):
    """The inner level under "expert" (`path` is its key path, "expert.", ...),
    read as moe-compile reads it: (the level with its defaults and the levels
    under it, the innermost level's leaf FFN keys)."""
    if not isinstance(value, dict):
        raise ConfigError(source, path[:-1], f"must be an object, got {_dump(value)}")
    for key in sorted(value):
        if key in INHERITED_KEYS:
            raise ConfigError(source, path + key,
                              "is inherited from the top level: give it there only")
        if key in TOP_LEVEL_ONLY_KEYS:
            raise ConfigError(source, path + key,
                              "is not supported inside 'expert': inner levels route by "
                              "token choice, dropless, without shared experts")
        if key not in LEVEL_KEYS:
            raise ConfigError(source, None, f"unknown key '{path + key}'")
    leaf = "expert" not in value
    level = dict(reference.LEVEL_DEFAULTS)
    if leaf:
        level.update(activation="silu", gated=True)
    for key in LEVEL_KEYS[:-2]:
        if not leaf and key in LEAF_KEYS:
            if key in value:
                raise ConfigError(source, path + key, _LEAF_RULE)
        elif key in value:
            level[key] = _check_value(source, key, value[key], path)
        elif key in ("num_experts", "top_k", "intermediate_size"):
            raise ConfigError(source, path + key, "is required")
    if "routing" in value and _check_value(source, "routing", value["routing"],
                                           path) != "token_choice":
        raise ConfigError(source, path + "routing",
                          "must be \"token_choice\" inside 'expert': inner levels route "
                          "by token choice")
    # SPEC §2 order: the level's own keys, then its FFN or its "expert".
    order = ("num_experts", "top_k") + (LEAF_KEYS if leaf else ()) + SELECTION_KEYS
    level = {key: level[key] for key in order}
    if leaf:
        return level, {key: level[key] for key in LEAF_KEYS}
    level["expert"], leaf_keys = _read_level(source, value["expert"], path + "expert.")
    return level, leaf_keys


def _check_level(source, c, token_choice, path=""):
    """SPEC §1 steps 4-6 of one level (`c` maps its keys), errors naming the
    keys by `path`."""
    def fail(key, message):
        raise ConfigError(source, path + key, message)

    E, k, ng, tg = c["num_experts"], c["top_k"], c["n_group"], c["topk_group"]
    if E % ng != 0:
        fail("n_group", f"({ng}) must divide '{path}num_experts' ({E})")
    if tg > ng:
        fail("topk_group", f"({tg}) must not exceed '{path}n_group' ({ng})")
    group_size = E // ng
    if ng > 1 and c["group_score"] == "top2_sum" and group_size < 2:
        fail("group_score", '"top2_sum" needs at least 2 experts per group, but '
             f"groups have {group_size}")
    allowed = tg * group_size
    if token_choice and k > allowed:
        where = f" in '{path}topk_group' groups)" if ng > 1 else ")"
        fail("top_k", f"({k}) must not exceed the experts routing may choose "
             f"from ({allowed}{where}")
    scaling = c["routed_scaling_factor"]
    if not math.isfinite(scaling) or scaling <= 0:
        fail("routed_scaling_factor", "must be finite and positive")


def _check_consistency(source, c):
    def fail(key, message):
        raise ConfigError(source, key, message)

    if not _C_IDENTIFIER.match(c.name):
        fail("name", f'must be a C identifier, got "{c.name}"')
    _check_level(source, {key: getattr(c, key) for key in
                          ("num_experts", "top_k") + SELECTION_KEYS},
                 c.routing != "expert_choice")
    if not math.isfinite(c.capacity_factor) or c.capacity_factor < 0:
        fail("capacity_factor", "must be finite and not negative")
    if c.routing == "expert_choice":
        if c.capacity_factor <= 0:
            fail("capacity_factor", 'must be positive for "expert_choice" routing')
        if c.scoring != "softmax":
            fail("scoring", 'must be "softmax" for "expert_choice" routing')
        if c.n_group != 1:
            fail("n_group", 'must be 1 for "expert_choice" routing')
        if c.selection_bias:
            fail("selection_bias", 'is not used by "expert_choice" routing')
    if c.shared_expert_gate and c.shared_intermediate_size <= 0:
        fail("shared_expert_gate", "needs a shared expert ('shared_intermediate_size' > 0)")
    seen = set()
    for arch in (part.strip() for part in c.gpu_arch.split(",")):
        match = _GPU_ARCH.match(arch)
        if not match or int(match.group(1)) < 75:
            fail("gpu_arch", "must be a comma-separated list of NVIDIA targets from "
                 f'sm_75 on, such as "sm_80,sm_90", got "{c.gpu_arch}"')
        if arch in seen:
            fail("gpu_arch", f"names {arch} twice")
        seen.add(arch)
    path, leaves = "", c.num_experts
    for level in c.levels[1:]:
        path += "expert."
        _check_level(source, level, True, path)
        # Leaf ids are 32-bit in the routing results.
        leaves *= level["num_experts"]
        if leaves > 2**31 - 1:
            fail(path + "num_experts", "makes more than 2147483647 leaf experts")


def _read_expert_shard(source, value):
    if not isinstance(value, dict):
        raise ConfigError(source, "expert_shard", 'must be an object {"first": ..., '
                          f'"count": ...}}, got {_dump(value)}')
    for key in sorted(value):
        if key not in ("first", "count"):
            raise ConfigError(source, None, f"unknown key 'expert_shard.{key}'")
    shard = {}
    for key, minimum in (("first", 0), ("count", 1)):
        if key not in value:
            raise ConfigError(source, f"expert_shard.{key}", "is required")
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(source, f"expert_shard.{key}",
                              f"must be an integer, got {_dump(number)}")
        if number < minimum:
            raise ConfigError(source, f"expert_shard.{key}",
                              f"must be at least {minimum}, got {number}")
        shard[key] = int(number)
    return shard


def _check_expert_shard(source, c):
    if c.expert_shard is None:
        return
    first, count = c.expert_shard["first"], c.expert_shard["count"]
    leaves = math.prod(level["num_experts"] for level in c.levels)
    if first >= leaves or count > leaves - first:
        kind = " leaf" if c.expert is not None else ""
        raise ConfigError(source, "expert_shard", f"holds experts [{first}, {first + count}), "
                          f"past the {leaves}{kind} experts")
    if c.routing == "expert_choice":
        raise ConfigError(source, "expert_shard", 'cannot be used with "expert_choice" '
                          "routing: each expert ranks every token of the batch, which no "
                          "rank sees whole")
    if c.target == "cuda":
        raise ConfigError(source, "expert_shard", 'is not supported for "target": "cuda" yet')


def as_config(config):
    """A MoEConfig from a MoEConfig, a dict, JSON text or a file path."""
    if isinstance(config, MoEConfig):
        return config
    if isinstance(config, dict):
        return MoEConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return MoEConfig.from_json(config)
    raise TypeError(f"expected a MoEConfig, dict or JSON path, got {type(config).__name__}")
