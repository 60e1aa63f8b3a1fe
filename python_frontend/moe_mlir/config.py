"""The SPEC §2 config as a Python object.

Validation follows moe-compile's rules and wording (lib/Compiler/Config.cpp),
so a config this module accepts is one moe-compile accepts, and an error reads
the same in both: `<source>: '<key>' <message>`.
"""

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

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


def _check_value(source, key, value):
    """`value` checked against `key`'s type and range; returns it normalized
    (numbers as float)."""
    kind, rule = _RULES[key]
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

    def __post_init__(self):
        self._validate("<config>")

    def _validate(self, source):
        for key in KEYS:
            object.__setattr__(self, key, _check_value(source, key, getattr(self, key)))
        _check_consistency(source, self)

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
            if key not in _RULES:
                raise ConfigError(source, None, f"unknown key '{key}'")
        for key in KEYS:
            if key in data:
                _check_value(source, key, data[key])
            elif key in REQUIRED:
                raise ConfigError(source, key, "is required")
        config = cls.__new__(cls)
        for field in dataclasses.fields(cls):
            object.__setattr__(config, field.name, data.get(field.name, field.default))
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
        """Every key, defaults included, in SPEC §2 order."""
        return {key: getattr(self, key) for key in KEYS}

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
    def route_width(self):
        """Columns of route()'s outputs: top_k, or every expert for expert choice."""
        return self.num_experts if self.routing == "expert_choice" else self.top_k

    def weight_shapes(self):
        """{ABI field: shape} for every weight this layer uses (SPEC §4)."""
        H, F, E = self.hidden_size, self.intermediate_size, self.num_experts
        Fs = self.shared_intermediate_size
        shapes = {"router": (E, H)}
        if self.router_bias:
            shapes["router_bias"] = (E,)
        if self.selection_bias:
            shapes["selection_bias"] = (E,)
        if self.gated:
            shapes["gate_proj"] = (E, F, H)
        shapes["up_proj"] = (E, F, H)
        shapes["down_proj"] = (E, H, F)
        if Fs > 0:
            if self.gated:
                shapes["shared_gate_proj"] = (Fs, H)
            shapes["shared_up_proj"] = (Fs, H)
            shapes["shared_down_proj"] = (H, Fs)
            if self.shared_expert_gate:
                shapes["shared_expert_gate"] = (H,)
        return shapes

    def to_mlir(self):
        """The layer as `moe` dialect text: a func.func over tensors holding
        one moe.layer, with a dynamic token dimension."""
        et = self.dtype
        def tensor(shape):
            return "tensor<" + "x".join(str(d) for d in shape) + f"x{et}>"
        shapes = self.weight_shapes()
        io = tensor(("?", self.hidden_size))
        args = [f"%x: {io}"] + [f"%{k}: {tensor(s)}" for k, s in shapes.items()]
        operands = " ".join(f"{k}(%{k} : {tensor(s)})" for k, s in shapes.items())
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


def _check_consistency(source, c):
    def fail(key, message):
        raise ConfigError(source, key, message)

    if not _C_IDENTIFIER.match(c.name):
        fail("name", f'must be a C identifier, got "{c.name}"')
    if c.num_experts % c.n_group != 0:
        fail("n_group", f"({c.n_group}) must divide 'num_experts' ({c.num_experts})")
    if c.topk_group > c.n_group:
        fail("topk_group", f"({c.topk_group}) must not exceed 'n_group' ({c.n_group})")
    group_size = c.num_experts // c.n_group
    if c.n_group > 1 and c.group_score == "top2_sum" and group_size < 2:
        fail("group_score", '"top2_sum" needs at least 2 experts per group, but '
             f"groups have {group_size}")
    allowed = c.topk_group * group_size
    if c.routing != "expert_choice" and c.top_k > allowed:
        where = " in 'topk_group' groups)" if c.n_group > 1 else ")"
        fail("top_k", f"({c.top_k}) must not exceed the experts routing may choose "
             f"from ({allowed}{where}")
    if not math.isfinite(c.routed_scaling_factor) or c.routed_scaling_factor <= 0:
        fail("routed_scaling_factor", "must be finite and positive")
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


def as_config(config):
    """A MoEConfig from a MoEConfig, a dict, JSON text or a file path."""
    if isinstance(config, MoEConfig):
        return config
    if isinstance(config, dict):
        return MoEConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return MoEConfig.from_json(config)
    raise TypeError(f"expected a MoEConfig, dict or JSON path, got {type(config).__name__}")
