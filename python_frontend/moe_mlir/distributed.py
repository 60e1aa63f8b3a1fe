"""Expert parallelism on torch.distributed: each rank holds a shard of the
experts and tokens travel to their experts by all-to-all.

    layer = ExpertParallelLayer(config, weights)   # after init_process_group
    y = layer(x)                                   # this rank's tokens

Rank r of R holds leaf experts [r·E // R, (r+1)·E // R): shards differ by at
most one expert when R does not divide E. A call routes the rank's own
tokens, sends each kept slot's row of x to the rank holding its expert
(`all_to_all_single` with split sizes), runs the received rows through the
rank's experts (the shard library's `run_experts`), sends the weighted
outputs back and sums them with the shared expert (`combine`). The exchange
is gloo's on CPUs. docs/EXPERT_PARALLEL.md says what equals what.
"""

import time

import numpy as np

from .abi import encode
from .compiler import compile as compile_layer
from .config import as_config

# The leaf experts' weights, which a shard holds only its experts' rows of:
# the projections with their biases, scales, zero points and column orders.
_EXPERT_WEIGHTS = tuple(p + suffix for p in ("gate_proj", "up_proj", "down_proj")
                        for suffix in ("", "_bias", "_scales", "_zeros", "_perm"))


def shard_bounds(num_experts, world_size):
    """[first of rank 0, first of rank 1, ..., num_experts]: rank r holds
    experts [bounds[r], bounds[r + 1])."""
    return [r * num_experts // world_size for r in range(world_size + 1)]


def _leaf_experts(config):
    return int(np.prod([level["num_experts"] for level in config.levels]))


def _torch():
    import torch
    import torch.distributed as dist
    return torch, dist


def _shard_weights(config, weights, first, count):
    """The rank's weights: expert weights sliced to [first, first + count)
    when given whole ([E, ...], or stacked over a hierarchy's levels), kept
    when given as the shard ([count, ...]); others as they are. Raises
    ValueError naming the weight whose shape is neither."""
    shard_config = config.replace(expert_shard={"first": first, "count": count})
    full_shapes = config.weight_shapes()
    shard_shapes = shard_config.weight_shapes()
    out = {}
    for key, value in weights.items():
        if value is None or key not in _EXPERT_WEIGHTS:
            out[key] = value
            continue
        array = np.asarray(value)
        if key not in shard_shapes:
            out[key] = array  # unused by the config: the layer reports it
        elif array.shape == tuple(shard_shapes[key]):
            out[key] = array
        elif array.shape == tuple(full_shapes[key]):
            if array.ndim == len(shard_shapes[key]):
                out[key] = array[first:first + count]  # no copy of the others
            else:  # stacked over a hierarchy's levels
                out[key] = array.reshape((-1,) + tuple(shard_shapes[key][1:]))[first:first + count]
        else:
            raise ValueError(
                f"weight {key!r} has shape {array.shape}: want the whole layer's "
                f"{tuple(full_shapes[key])} or this rank's shard of experts "
                f"[{first}, {first + count}), {tuple(shard_shapes[key])}")
    return out


def _raise_for(gathered):
    """Raises, naming each rank, if any rank's (value, error) has an error."""
    failed = [(r, error) for r, (_, error) in enumerate(gathered) if error is not None]
    if failed:
        raise ValueError("ExpertParallelLayer: " + "; ".join(
            f"rank {r}: {error}" for r, error in failed))


class ExpertParallelLayer:
    """One MoE layer sharded over the ranks of a torch.distributed group.

    `config`: a MoEConfig, dict or JSON path, the same on every rank (checked)
    and without "expert_shard". `weights`: the SPEC §4 fields, either the
    whole layer's or only this rank's shard of the expert weights; router and
    shared expert are whole on every rank. Construction is collective: every
    rank of `group` must construct the layer, and every rank raises the same
    error when any rank's config or weights are wrong.
    """

    def __init__(self, config, weights, group=None, *, extra_args=()):
        torch, dist = _torch()
        if not dist.is_initialized():
            raise RuntimeError("ExpertParallelLayer needs torch.distributed: call "
                               "init_process_group first")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

        # Agree on the config before anything can differ between ranks; a
        # rank whose config fails says so in the same gather, so that no
        # rank is left waiting in a later collective.
        text, error = None, None
        try:
            self.config = as_config(config)
            if self.config.expert_shard is not None:
                raise ValueError("takes the whole layer's config: it sets "
                                 "'expert_shard' itself")
            text = self.config.to_json()
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        configs = [None] * self.world_size
        dist.all_gather_object(configs, (text, error), group=group)
        _raise_for(configs)
        for r, (other, _) in enumerate(configs):
            if other != configs[0][0]:
                raise ValueError(f"ExpertParallelLayer: rank {r}'s config differs from "
                                 f"rank 0's:\n  rank 0: {configs[0][0]}\n  rank {r}: {other}")

        self.num_experts = _leaf_experts(self.config)
        if self.num_experts < self.world_size:
            raise ValueError(f"ExpertParallelLayer: {self.num_experts} experts cannot "
                             f"be sharded over {self.world_size} ranks")
        self.bounds = shard_bounds(self.num_experts, self.world_size)
        self.first = self.bounds[self.rank]
        self.count = self.bounds[self.rank + 1] - self.first
        self.shard_sizes = [self.bounds[r + 1] - self.bounds[r]
                            for r in range(self.world_size)]

        error = None
        try:
            shard = self.config.replace(
                expert_shard={"first": self.first, "count": self.count})
            compiled = compile_layer(shard, extra_args=extra_args)
            self.layer = compiled(_shard_weights(self.config, weights, self.first,
                                                 self.count))
        except Exception as e:  # reported on every rank below
            error = f"{type(e).__name__}: {e}"
        errors = [None] * self.world_size
        dist.all_gather_object(errors, (None, error), group=group)
        _raise_for(errors)
        self.width = self.config.route_width
        self.hidden_size = self.config.hidden_size
        # Seconds spent in each part of the last call.
        self.timings = {}

    def __call__(self, x):
        """The layer on this rank's tokens x ([T, H], T may be 0 and differ
        between ranks; numpy, or a torch CPU tensor). Collective: every rank
        of the group must call it. Returns float32 numpy for numpy x, a
        tensor of x's dtype for a tensor. An error on any rank (a wrong x,
        a failed kernel call) raises on every rank, and the layer stays
        usable."""
        torch, dist = _torch()
        as_tensor = isinstance(x, torch.Tensor)
        error, rows = None, np.empty((0, self.hidden_size), np.float32)
        try:
            rows = self._rows(torch, x)
        except Exception as e:  # raised on every rank by _forward
            error = e
        y = self._forward(torch, dist, rows, error)
        if as_tensor:
            return torch.from_numpy(y).to(x.dtype)
        return y

    def _rows(self, torch, x):
        """x as a contiguous float32 [T, H] array, or the error it is."""
        if isinstance(x, torch.Tensor):
            if x.device.type != "cpu":
                raise ValueError("ExpertParallelLayer runs on CPU tensors (gloo); "
                                 f"x is on {x.device}")
            if x.requires_grad and torch.is_grad_enabled():
                raise RuntimeError("ExpertParallelLayer has no backward: call it under "
                                   "torch.no_grad() or on a tensor that does not "
                                   "require grad")
            rows = x.detach().to(torch.float32).numpy()
        else:
            rows = np.asarray(x, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.hidden_size:
            raise ValueError(f"x has shape {tuple(rows.shape)}, want [T, {self.hidden_size}]")
        if self.layer._ctx.handle is None:
            raise RuntimeError("the layer was closed")
        return np.ascontiguousarray(rows)

    forward = __call__

    def _exchange(self, torch, dist, send, send_splits, recv_splits):
        """all_to_all_single of the rows of `send` (a numpy array, rows
        grouped by destination rank); returns the received rows. Rows go as
        bytes, so that any element type travels (gloo has no uint16)."""
        send = np.ascontiguousarray(send)
        tail = send.shape[1:]
        row_bytes = send.dtype.itemsize * int(np.prod(tail, dtype=np.int64))
        recv = torch.empty((sum(recv_splits), row_bytes), dtype=torch.uint8)
        dist.all_to_all_single(recv, torch.from_numpy(send.view(np.uint8).reshape(-1, row_bytes)),
                               output_split_sizes=recv_splits,
                               input_split_sizes=send_splits, group=self.group)
        return recv.numpy().view(send.dtype).reshape((-1,) + tail)

    def _failed_ranks(self, failed):
        """Whether any rank's `failed` is set (a collective)."""
        torch, dist = _torch()
        flags = torch.zeros(self.world_size, dtype=torch.int32)
        flags[self.rank] = int(failed)
        dist.all_reduce(flags, group=self.group)
        return [r for r in range(self.world_size) if flags[r]]

    def _raise_failed(self, error, ranks):
        if error is not None:
            raise error
        raise RuntimeError(f"ExpertParallelLayer: the call failed on rank(s) "
                           f"{', '.join(map(str, ranks))}, which raised the error")

    def _forward(self, torch, dist, x, error):
        timings = {"route": 0.0, "exchange": 0.0, "experts": 0.0, "combine": 0.0}
        start = time.perf_counter()
        T, W, H = x.shape[0], self.width, self.hidden_size
        ids = np.empty((0, W), np.int32)
        weights = np.empty((0, W), np.float32)
        if T and error is None:
            try:
                ids, weights = self.layer.route(x)
            except Exception as e:
                error = e
        # Kept slots by expert, token order within an expert: experts are
        # numbered rank by rank, so this groups them by destination too.
        flat = ids.reshape(-1)
        kept = np.flatnonzero(flat >= 0)
        order = kept[np.argsort(flat[kept], kind="stable")]
        expert_counts = np.bincount(flat[order], minlength=self.num_experts).astype(np.int64)
        if error is not None:
            # -1 counts tell every rank that this one failed.
            expert_counts[:] = -1
        send_rows = [max(0, int(expert_counts[self.bounds[r]:self.bounds[r + 1]].sum()))
                     for r in range(self.world_size)]
        timings["route"] += time.perf_counter() - start

        start = time.perf_counter()
        # Each rank learns how many rows each of its experts gets from each
        # source: [source, local expert].
        recv_counts = self._exchange(torch, dist, expert_counts, self.shard_sizes,
                                     [self.count] * self.world_size)
        recv_counts = recv_counts.reshape(self.world_size, self.count)
        failed = [r for r in range(self.world_size) if (recv_counts[r] < 0).any()]
        if failed or error is not None:
            self._raise_failed(error, failed)
        recv_rows = [int(n) for n in recv_counts.sum(axis=1)]
        # Rows travel in the layer's storage type (bf16 as its bits).
        rows = self._exchange(torch, dist, encode(x[order // W], self.config.dtype),
                              send_rows, recv_rows)
        row_weights = self._exchange(torch, dist, weights.reshape(-1)[order],
                                     send_rows, recv_rows)
        timings["exchange"] += time.perf_counter() - start

        # Received rows come by source, then local expert; run_experts wants
        # them by local expert, then source (token order across ranks).
        start = time.perf_counter()
        local = np.repeat(np.tile(np.arange(self.count), self.world_size),
                          recv_counts.reshape(-1))
        by_expert = np.argsort(local, kind="stable")
        out = np.empty((len(by_expert), H), np.float32)
        try:
            if len(by_expert):
                out[by_expert] = self.layer.run_experts(rows[by_expert],
                                                        recv_counts.sum(axis=0),
                                                        row_weights[by_expert])
        except Exception as e:
            error = e
        failed = self._failed_ranks(error is not None)
        if failed:
            self._raise_failed(error, failed)
        timings["experts"] += time.perf_counter() - start

        start = time.perf_counter()
        back = self._exchange(torch, dist, out, recv_rows, send_rows)
        timings["exchange"] += time.perf_counter() - start

        start = time.perf_counter()
        y = np.empty((T, H), np.float32)
        if T:
            # Every rank has its results: a failure here is this rank's own.
            # combine never reads a dropped slot's row, so none is zeroed.
            expert_out = np.empty((T * W, H), np.float32)
            expert_out[order] = back
            y = self.layer.combine(x, ids, expert_out.reshape(T, W, H))
        timings["combine"] += time.perf_counter() - start
        self.timings = timings
        return y

    def close(self):
        self.layer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["ExpertParallelLayer", "shard_bounds"]
