"""compile(config) -> CompiledMoE, a generated library loaded through its C ABI.

Libraries are cached in $MOE_MLIR_CACHE (default ~/.cache/moe_mlir), one
directory per hash of the normalized config JSON and of the moe-compile binary
that built it, so a rebuilt compiler never serves a stale library.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import abi
from .abi import AbiError, CompileError, moe_compile_path
from .config import as_config

try:
    import ml_dtypes
except ImportError:  # optional
    ml_dtypes = None


def cache_dir():
    root = os.environ.get("MOE_MLIR_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "moe_mlir"


def _cache_key(config, compiler, extra_args):
    stat = compiler.stat()
    h = hashlib.sha256()
    h.update(config.to_json().encode())
    h.update(f"\0{compiler.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    # abi.compile_config also passes $MOE_COMPILE_ARGS.
    args = (*os.environ.get("MOE_COMPILE_ARGS", "").split(), *extra_args)
    h.update(("\0" + " ".join(args)).encode())
    return h.hexdigest()[:24]


def compile(config, target="cpu", *, extra_args=(), cache=True):
    """Compiles `config` (MoEConfig, dict or JSON path) with moe-compile and
    loads the library. Raises ConfigError for an invalid config, CompileError
    carrying moe-compile's message when it fails."""
    config = as_config(config)
    if target != config.target:
        config = config.replace(target=target)
    compiler = moe_compile_path()
    if not compiler.is_file():
        raise CompileError(f"moe-compile not found at {compiler}")
    extra_args = tuple(extra_args)
    so = None
    if cache:
        root = cache_dir()
        entry = root / _cache_key(config, compiler, extra_args)
        so = entry / f"lib{config.name}.so"
        if so.is_file():
            return CompiledMoE(config, so, cached=True)
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    else:
        staging = Path(tempfile.mkdtemp(prefix="moe_mlir-"))
    try:
        built = abi.compile_config(config.to_dict(), staging, extra_args)
        if not cache:
            return CompiledMoE(config, built, cached=False, owned_dir=staging)
        try:
            # Publishing by rename keeps a concurrent compile of the same
            # config from ever seeing a half-written entry.
            staging.rename(entry)
        except OSError:
            if not so.is_file():
                raise
        return CompiledMoE(config, so, cached=False)
    finally:
        if cache and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class CompiledMoE:
    """A compiled layer, not yet bound to weights: `compiled(weights)` gives
    a callable MoELayer."""

    def __init__(self, config, so_path, cached=False, owned_dir=None):
        self.config = as_config(config)
        self.path = Path(so_path)
        self.cached = cached
        self._owned_dir = owned_dir
        self.library = abi.Library(self.path, self.config.name, self.config.to_dict())

    @property
    def header_path(self):
        return self.path.with_name(f"{self.config.name}.h")

    def config_json(self):
        """The config the library says it was built for."""
        return json.loads(self.library.config_json())

    def __call__(self, weights):
        return MoELayer(self, weights)

    def __repr__(self):
        return f"CompiledMoE({self.config.name!r}, {str(self.path)!r})"


def _is_native(x, dtype):
    """Whether x is already in the layer's element type (then y is returned
    in it too)."""
    if dtype == "f16":
        return x.dtype == np.float16
    if dtype == "bf16" and ml_dtypes is not None:
        return x.dtype == np.dtype(ml_dtypes.bfloat16)
    return False


class MoELayer:
    """A compiled layer bound to its weights (a live C context).

    Weights are the SPEC §4 fields as arrays (any float dtype; converted to the
    layer's dtype once, here), with a hierarchy's level routers and
    docs/FAMILY-RULES.md's biases (gate_proj_bias, up_proj_bias,
    down_proj_bias, output_bias) where the config uses them; see
    config.weight_shapes(). `layer(x)` takes x of shape [..., H]."""

    def __init__(self, compiled, weights):
        self.compiled = compiled
        self.config = compiled.config
        fields = self.config.weight_keys()
        unknown = set(weights) - set(fields)
        if unknown:
            raise KeyError(f"unknown weights {sorted(unknown)}; the fields are "
                           f"{', '.join(fields)}")
        given = {k: v for k, v in weights.items() if v is not None}
        wanted = self.config.weight_shapes()
        missing = set(wanted) - set(given)
        if missing:
            raise ValueError(f"missing weights {sorted(missing)} for config "
                             f"'{self.config.name}'")
        unused = set(given) - set(wanted)
        if unused:
            raise ValueError(f"weights {sorted(unused)} are not used by config "
                             f"'{self.config.name}'")
        self._ctx = compiled.library.create(
            {k: np.asarray(v, dtype=np.float32) for k, v in given.items()})

    def _tokens(self, x):
        x = np.asarray(x)
        H = self.config.hidden_size
        if x.ndim < 1 or x.shape[-1] != H:
            raise ValueError(f"x has shape {x.shape}, want [..., {H}]")
        return x, x.reshape(-1, H)

    def _sequences(self, x):
        """x's tokens as the batches routing sees: with a capacity (which
        counts a batch's tokens), each sequence of a [..., S, H] x on its
        own, as Hugging Face's Switch Transformers apply it; else all at
        once."""
        x, rows = self._tokens(x)
        if x.ndim < 3 or rows.shape[0] == 0 or (self.config.capacity_factor == 0.0
                                                and self.config.routing == "token_choice"):
            return x, [rows]
        per_sequence = rows.reshape(-1, x.shape[-2], x.shape[-1])
        return x, list(per_sequence)

    def __call__(self, x):
        """y = the layer applied to every row of x, shaped like x; float32, or
        x's dtype when x is already in the layer's element type. With a
        capacity factor, each sequence of a [..., S, H] x is a batch of its
        own."""
        x, batches = self._sequences(x)
        if self._ctx.handle is None:
            raise RuntimeError("the layer was closed")
        if self.config.expert_shard is not None:
            raise RuntimeError(f"'{self.config.name}' is an expert shard: it has no "
                               "forward; use run_experts and combine, or "
                               "moe_mlir.distributed.ExpertParallelLayer")
        y = np.concatenate([self.compiled.library.forward(self._ctx, rows)
                            for rows in batches]).reshape(x.shape)
        return y.astype(x.dtype) if _is_native(x, self.config.dtype) else y

    forward = __call__

    def route(self, x):
        """(ids int32 [..., W], weights float32 [..., W]): the experts chosen per
        token and their routing weights; W = top_k (num_experts for expert
        choice); a dropped assignment has id -1 and weight 0. A hierarchical
        layer reports leaf ids and combined weights; W is then the product of
        the levels' widths (config.route_width)."""
        x, batches = self._sequences(x)
        if self._ctx.handle is None:
            raise RuntimeError("the layer was closed")
        routed = [self.compiled.library.route(self._ctx, rows) for rows in batches]
        ids = np.concatenate([r[0] for r in routed])
        w = np.concatenate([r[1] for r in routed])
        lead = x.shape[:-1]
        width = self.compiled.library.width
        return ids.reshape(*lead, width), w.reshape(*lead, width)

    def run_experts(self, rows, counts, weights):
        """An expert shard's experts on rows other ranks sent (float32, the
        layer's type, or a bf16 layer's bits as uint16; [N, H]), grouped by local expert with `counts`
        ([expert_shard count]); returns float32 [N, H], row r scaled by
        weights[r] (with router_weight_on_input: the expert of weights[r] ·
        rows[r], unscaled)."""
        if self._ctx.handle is None:
            raise RuntimeError("the layer was closed")
        return self.compiled.library.run_experts(self._ctx, rows, counts, weights)

    def combine(self, x, ids, expert_out):
        """An expert shard's combine: the shared expert of x ([T, H]) plus
        the kept slots' rows of expert_out (float32 [T, W, H]), ids being
        route(x)'s, plus the output bias (output_bias); float32 [T, H]."""
        if self._ctx.handle is None:
            raise RuntimeError("the layer was closed")
        return self.compiled.library.combine(self._ctx, x, ids, expert_out)

    def close(self):
        self._ctx.destroy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["compile", "CompiledMoE", "MoELayer", "CompileError", "AbiError", "cache_dir"]
