#!/usr/bin/env bash
# Builds and runs examples/expert_parallel_mpi.c: one MoE layer split by
# expert over R MPI ranks.
#
#   expert_parallel_mpi.sh <config.json> <ranks> <outdir> [program args...]
#
# For each rank r it compiles the config's shard, experts [r*E/R, (r+1)*E/R),
# into <outdir>/rank<r> and builds the program there against it, then runs
# all of them in one job with mpirun's MPMD syntax, each rank its own binary
# (`mpirun -np 1 rank0/... : -np 1 rank1/...`). The program args (default:
# 16*(r+1) tokens on rank r) go to every rank, e.g. `--dump y.bin 40 0 25`.
#
# Environment: MOE_COMPILE (default: the checkout's build/bin/moe-compile),
# MPICC (mpicc), MPIRUN (mpirun), MPIRUN_FLAGS (added to mpirun's own).
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 <config.json> <ranks> <outdir> [program args...]" >&2
  exit 2
fi
config=$1 ranks=$2 outdir=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
moe_compile=${MOE_COMPILE:-$here/../build/bin/moe-compile}
mpicc=${MPICC:-mpicc}
mpirun=${MPIRUN:-mpirun}

# The config must be one level of experts: num_experts is read with sed so
# that the recipe needs no JSON tool.
experts=$(sed -n 's/.*"num_experts"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$config" | head -n 1)
if [ -z "$experts" ]; then
  echo "$0: no \"num_experts\" in $config" >&2
  exit 2
fi
if grep -q '"expert_shard"' "$config"; then
  echo "$0: $config already has an \"expert_shard\"; give the whole layer's config" >&2
  exit 2
fi
if ! [ "$ranks" -ge 1 ] 2>/dev/null || [ "$ranks" -gt "$experts" ]; then
  echo "$0: ranks must be between 1 and num_experts ($experts), got '$ranks'" >&2
  exit 2
fi

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
if [ $# -eq 0 ]; then
  for ((r = 0; r < ranks; ++r)); do set -- "$@" $((16 * (r + 1))); done
fi

# 1 if the config line of the header in $dir says "$1":true, else 0.
flag() { if grep -q "^ \* Config: .*\"$1\":true" "$dir/$header"; then echo 1; else echo 0; fi; }

apps=()
for ((r = 0; r < ranks; ++r)); do
  dir=$outdir/rank$r
  mkdir -p "$dir"
  first=$((r * experts / ranks))
  count=$(((r + 1) * experts / ranks - first))
  # A header left by an earlier config would be taken for this one's.
  rm -f "$dir"/*.h
  # The shard's config: the layer's, with "expert_shard" added first.
  awk -v shard="\"expert_shard\": {\"first\": $first, \"count\": $count}, " \
    '!done && sub(/\{/, "{" shard) { done = 1 } { print }' "$config" > "$dir/shard.json"
  "$moe_compile" "$dir/shard.json" -o "$dir"

  # The header's first lines give the name and the normalized config, which
  # says which weights the layer takes.
  header=$(cd "$dir" && ls -- *.h)
  name=${header%.h}
  "$mpicc" -std=c11 -O2 -Wall -Wextra -I "$dir" \
    -DMOE_HEADER="\"$header\"" -DMOE_PREFIX="$name" \
    -DMOE_MACRO="$(echo "$name" | tr '[:lower:]' '[:upper:]')" \
    -DMOE_GATED="$(flag gated)" -DMOE_SHARED_GATE="$(flag shared_expert_gate)" \
    -DMOE_ROUTER_BIAS="$(flag router_bias)" -DMOE_SELECTION_BIAS="$(flag selection_bias)" \
    "$here/expert_parallel_mpi.c" -L "$dir" -l"$name" -Wl,-rpath,"$dir" -lm \
    -o "$dir/expert_parallel_mpi"

  if [ "$r" -gt 0 ]; then apps+=(:); fi
  apps+=(-np 1 "$dir/expert_parallel_mpi" "$@")
done

# Open MPI refuses more ranks than cores, and root, unless told.
flags=()
if "$mpirun" --version 2>/dev/null | grep -q "Open MPI"; then
  flags+=(--oversubscribe)
  if [ "$(id -u)" -eq 0 ]; then flags+=(--allow-run-as-root); fi
fi
# shellcheck disable=SC2086 # MPIRUN_FLAGS is a list of words
exec "$mpirun" "${flags[@]}" ${MPIRUN_FLAGS:-} "${apps[@]}"
