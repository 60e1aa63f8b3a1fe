"""The SPEC §2 config as a Python object.

moe-compile owns the rules: a MoEConfig is checked, and its defaults filled
in, by `moe-compile - --print-config`, so a config this module accepts is
one moe-compile accepts, and an error is moe-compile's own:
`<source>: '<key>' <message>`.
"""

import copy
import dataclasses
import functools
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import reference

# Keys of docs/FAMILY-RULES.md §2 that exist only with their rule on:
# sparsemixer_eps with "sparsemixer" scoring, swiglu_alpha, swiglu_limit and
# swiglu_up_offset with "clamped_swiglu". A MoEConfig holds None for them
# otherwise, and neither sends nor reports them then, as moe-compile does.
CONDITIONAL_KEYS = ("sparsemixer_eps", "swiglu_alpha", "swiglu_limit", "swiglu_up_offset")

# The top level's keys (besides "expert" and "expert_shard"), in SPEC §2
# order, then docs/FAMILY-RULES.md §2's.
KEYS = (
    "name", "hidden_size", "intermediate_size", "num_experts", "top_k",
    "dtype", "activation", "gated", "scoring", "normalize_top_k",
    "routed_scaling_factor", "router_bias", "selection_bias", "n_group",
    "topk_group", "group_score", "routing", "capacity_factor",
    "shared_intermediate_size", "shared_expert_gate", "target", "gpu_arch",
    "normalize_p", "sparsemixer_eps", "router_weight_on_input", "swiglu_alpha",
    "swiglu_limit", "swiglu_up_offset", "expert_bias", "output_bias",
)

# The leaf FFN's keys: the innermost level's in a hierarchy.
LEAF_KEYS = ("intermediate_size", "activation", "gated", "swiglu_alpha", "swiglu_limit",
             "swiglu_up_offset")
# The routing keys of a level (SPEC §1 steps 1-6), in SPEC §2 order, then
# FAMILY-RULES' (sparsemixer_eps only with "sparsemixer" scoring).
SELECTION_KEYS = ("scoring", "sparsemixer_eps", "normalize_top_k", "normalize_p",
                  "routed_scaling_factor", "router_bias", "selection_bias", "n_group",
                  "topk_group", "group_score")

_ERROR = re.compile(r"^(?:moe-compile: error: )?<stdin>: (?:'([^']*)' )?(.*)$", re.S)


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


@functools.lru_cache(maxsize=1024)
def _print_config(compiler, stamp, text):
    """moe-compile's normalized config for the JSON `text`, as JSON text, and
    None; or None and (key, message) for its error. `stamp` tells a rebuilt
    compiler from the one that answered before."""
    try:
        proc = subprocess.run([compiler, "-", "--print-config"], input=text,
                              capture_output=True, text=True)
    except OSError as e:
        from .abi import CompileError  # abi imports this module
        raise CompileError(f"moe-compile not found at {compiler} ({e.strerror}): it "
                           "checks every config") from None
    if proc.returncode == 0:
        return proc.stdout, None
    match = _ERROR.match(proc.stderr.strip())
    if not match:
        raise RuntimeError(f"moe-compile --print-config failed: {proc.stderr.strip()}")
    return None, (match.group(1), match.group(2))


def _jsonable(value):
    """numpy scalars and the like as the plain values they hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError


def normalized(data, source="<config>"):
    """`data` (a dict of SPEC §2 keys) with every default filled in, as
    moe-compile reads it; raises ConfigError with moe-compile's message."""
    from .abi import moe_compile_path  # abi imports this module
    try:
        text = json.dumps(data, default=_jsonable, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(source, None, "is not JSON: "
                          f"{data!r:.200}") from None
    compiler = moe_compile_path()
    try:
        stat = compiler.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = None
    config, error = _print_config(str(compiler), stamp, text)
    if error is not None:
        raise ConfigError(source, *error)
    return json.loads(config)  # a fresh dict: callers may change it


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
    # Hierarchical MoE: the inner level (a dict of a level's keys, nested
    # through "expert"), kept with every default filled in. Then intermediate_size,
    # activation and gated mirror the innermost level's (what is passed for
    # them is replaced).
    expert: Optional[dict] = dataclasses.field(default=None, hash=False)
    # Expert parallelism: {"first": f, "count": n}, the library then holds
    # leaf experts [f, f + n) only (docs/EXPERT_PARALLEL.md).
    expert_shard: Optional[dict] = dataclasses.field(default=None, hash=False)
    # The experts' weight format: {"format": "bf16" | "f16" | "int8" | "int4" |
    # "fp8_e4m3" | "mxfp4", "group_size": g, "zero_points": z, "act_order": a}
    # (docs/QUANTIZATION.md); None for weights in dtype.
    expert_weights: Optional[dict] = dataclasses.field(default=None, hash=False)
    # docs/FAMILY-RULES.md: the routing weights' p-norm (level 1's), the
    # sparsemixer's ε (None unless "scoring": "sparsemixer"), the routing
    # weight multiplying the experts' input, clamped_swiglu's alpha, limit and
    # up offset (None unless "activation": "clamped_swiglu"; a hierarchy's mirror the
    # innermost level's), the leaf experts' biases and the output bias.
    normalize_p: float = 1.0
    sparsemixer_eps: Optional[float] = None
    router_weight_on_input: bool = False
    swiglu_alpha: Optional[float] = None
    swiglu_limit: Optional[float] = None
    swiglu_up_offset: Optional[float] = None
    expert_bias: bool = False
    output_bias: bool = False

    def __post_init__(self):
        data = {key: getattr(self, key) for key in KEYS
                if (self.expert is None or key not in LEAF_KEYS)
                and not _absent(key, getattr(self, key))}
        if self.expert is not None:
            data["expert"] = self.expert
        if self.expert_shard is not None:
            data["expert_shard"] = self.expert_shard
        if self.expert_weights is not None:
            data["expert_weights"] = self.expert_weights
        self._set(normalized(data))

    def _set(self, config):
        """Takes every field from moe-compile's normalized `config`; the leaf
        FFN's keys of a hierarchy from its innermost level; the conditional
        keys are None where their rule is off."""
        leaf = config
        while "expert" in leaf:
            leaf = leaf["expert"]
        for key in KEYS:
            if key in CONDITIONAL_KEYS:
                value = (leaf if key in LEAF_KEYS else config).get(key)
            else:
                value = config[key] if key in config else leaf[key]
            object.__setattr__(self, key, value)
        expert = config.get("expert")
        object.__setattr__(self, "expert", None if expert is None else _in_spec_order(expert))
        shard = config.get("expert_shard")
        object.__setattr__(self, "expert_shard", None if shard is None else dict(shard))
        quantized = config.get("expert_weights")
        object.__setattr__(self, "expert_weights", None if quantized is None else dict(quantized))

    # -- conversions ---------------------------------------------------------

    @classmethod
    def from_dict(cls, data, source="<config>"):
        """A config from a dict of SPEC §2 keys, checked by moe-compile;
        errors name `source`."""
        if not isinstance(data, dict):
            raise ConfigError(source, None, "must hold one JSON object")
        config = cls.__new__(cls)
        config._set(normalized(data, source))
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
        """Every key, defaults included, in SPEC §2 order (then FAMILY-RULES'
        as moe-compile reports them: sparsemixer_eps and swiglu_* only with
        their rule on); a hierarchical config has its levels under "expert",
        the leaf FFN's keys in the innermost only."""
        data = {key: getattr(self, key) for key in KEYS
                if (self.expert is None or key not in LEAF_KEYS)
                and not _absent(key, getattr(self, key))}
        if self.expert is not None:
            data["expert"] = copy.deepcopy(self.expert)
        if self.expert_shard is not None:
            data["expert_shard"] = dict(self.expert_shard)
        if self.expert_weights is not None:
            data["expert_weights"] = dict(self.expert_weights)
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
        three per inner level, then FAMILY-RULES' four: gate_proj_bias,
        up_proj_bias, down_proj_bias, output_bias)."""
        return reference.weight_keys(self.to_dict())

    def weight_shapes(self):
        """{ABI field: shape} for every weight this layer uses (SPEC §4)."""
        return reference.weight_shapes(self.to_dict())

    def to_mlir(self):
        """The module moe-compile builds for this layer (`--emit=mlir`): its
        kernel functions over memrefs, each holding the layer's moe ops
        (`moe-opt` parses it, `moe-opt -moe-expand` splits it)."""
        from .abi import moe_compile_path
        with tempfile.TemporaryDirectory(prefix="moe_mlir-") as scratch:
            proc = subprocess.run([str(moe_compile_path()), "-", "--emit=mlir", "-o", scratch],
                                  input=self.to_json(), capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"moe-compile --emit=mlir failed: {proc.stderr.strip()}")
            return (Path(scratch) / f"{self.name}.mlir").read_text()


def _absent(key, value):
    """Whether `key` is a conditional key whose rule is off."""
    return key in CONDITIONAL_KEYS and value is None


def _in_spec_order(level):
    """An inner level's keys in SPEC §2 order: its own, then its FFN's or its
    "expert" (moe-compile prints them sorted). FAMILY-RULES' keys come where
    moe-compile reports them (sparsemixer_eps and swiglu_* with their rule)."""
    leaf = "expert" not in level
    order = ("num_experts", "top_k") + (LEAF_KEYS if leaf else ()) + SELECTION_KEYS
    ordered = {key: level[key] for key in order
               if key in level or key not in CONDITIONAL_KEYS}
    if not leaf:
        ordered["expert"] = _in_spec_order(level["expert"])
    return ordered


def as_config(config):
    """A MoEConfig from a MoEConfig, a dict, JSON text or a file path."""
    if isinstance(config, MoEConfig):
        return config
    if isinstance(config, dict):
        return MoEConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return MoEConfig.from_json(config)
    raise TypeError(f"expected a MoEConfig, dict or JSON path, got {type(config).__name__}")
