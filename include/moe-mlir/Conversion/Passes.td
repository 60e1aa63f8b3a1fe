//===- Passes.td - Lowerings out of the moe dialect --------*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

defvar MoELoweringDialects = [
  "::mlir::arith::ArithDialect",
  "::mlir::bufferization::BufferizationDialect",
  "::mlir::linalg::LinalgDialect",
  "::mlir::math::MathDialect",
  "::mlir::memref::MemRefDialect",
  "::mlir::scf::SCFDialect",
  "::mlir::tensor::TensorDialect"
];

def MoEDecomposeGate : Pass<"moe-decompose-gate"> {
  let summary = "Split moe.gate into its router contraction and moe.select";
  let description = [{
    The first half of the linalg stage: each `moe.gate` becomes the router
    logits as a `linalg.matmul` on tensors (`[T, H] × [E, H]^T` with the
    router in its `nn.Linear` layout, accumulated in f32 from the widened
    `router_bias` or from zero) and a `moe.select` that turns the logits
    into ids and weights. The contraction is then upstream's to tile and
    vectorize, and the select, which implements TilingInterface over its
    tokens, is where the gate's tile of tokens is chosen, its producers
    fused into the tile loop.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoEDecomposeSharedExpert : Pass<"moe-decompose-shared-expert"> {
  let summary = "Split moe.shared_expert into linalg contractions";
  let description = [{
    On the linalg stage the shared expert is a dense FFN of every token,
    products in f32, in one of two forms:

    * row-wise, for fewer tokens than one vector of rows (two for bf16 and
      f16 weights): each projection a `linalg.generic` contraction with the
      weight (in its `nn.Linear` layout) viewed as 4 streams of rows,
      `[4, N / 4, K]`, and its result as `[T, 4, N / 4]`, which lays out
      `[T, N]`: a register tile takes one row of each stream, so each thread
      reads its rows as 4 long sequential streams (`linalg.matmul`s where 4
      does not divide both Fs and H); the activation an elementwise
      `linalg.generic`;
    * packed, for more: `linalg.pack` groups the token rows by the target's
      vector lanes (`[⌈T / L⌉, H, L]`, zero rows padding the last group),
      each projection is a `linalg.generic` contraction over that layout,
      `out[g, n, l] += Σ_k rows[g, k, l] · w[n, k]`, whose register tiles
      are outer products of a broadcast weight and vectors of rows, the
      activation's packed result is the down projection's packed input,
      and `linalg.unpack` restores the rows. bf16 and f16 weights are
      widened by an elementwise generic that the tiling fuses into each
      block of the reduction.

    With a dynamic token count an `scf.if` chooses the form at run time.
    With an `expert_gate`, `sigmoid(x_t · expert_gate)`, a reduction, then
    scales the rows. The lanes are the module target's (`moe.target`): 16
    with `avx512f`, 8 otherwise or without a target. `moe-configure-cpu`
    gives each op its tiling and `moe-tile-cpu` tiles, fuses and
    vectorizes it with upstream's drivers.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoEConfigureCPU : Pass<"moe-configure-cpu", "::mlir::ModuleOp"> {
  let summary = "Choose each op's CPU tiling from the module's target";
  let description = [{
    Reads the module's `moe.target` (`#moe.cpu_target`, which moe-compile
    sets from `--march`) and attaches a `lowering_config` to every op
    without one that it tiles:

    * the linalg stage's ops get a `#moe.tiling`, which `moe-tile-cpu`
      applies:
      - a row-wise contraction (one M, one N and a static K loop: the
        router logits) a register tile of 2 × 4, its N loop outermost, over
        a split reduction of one vector's lanes (or the largest power of
        two below that divides K); one over streamed weight rows (N loops
        (s, j): the shared expert's projections for few tokens) the same,
        4 being one row of each stream;
      - a packed contraction (M loops (g, l), l one vector's lanes) a
        register tile of 6 columns (12 with `avx512f`) × 2 groups × the
        lanes, one reduction step at a time, its groups' loop outside its
        columns', in cache blocks of 256 rows and of the reduction, whose
        slice of the tile's groups takes 16 KiB (a block divides K, or
        there are none); the generic that widens its bf16 or f16 weights a
        register tile of one row of lanes;
      - a contraction not read by a `moe.select`: its columns distributed
        across threads in at most 64 tiles of whole register tiles, through
        its elementwise consumer (the activation) when it has one, so that
        it is fused into that consumer's tiles;
      - a token-choice `moe.select` without capacity its tile of
        `token-tile` tokens (0: none, so the whole `[T, E]` logits exist at
        once);
    * `moe.refine` and `moe.expert` get a `#moe.lowering_config`, by which
      `moe-lower-gate` and `moe-lower-experts` tile them.

    A module without a target is left as it is: the lowerings use their
    options, and the linalg stage's ops (the router contraction, the select,
    the shared expert's contractions) stay untiled (the scalar lowering
    runs them).

    The choice: accumulators take half the vector registers and the rows
    loaded per step most of the rest, so a dot-product tile is 4 input rows
    × 4 weight rows of 16 lanes with `avx512f` (32 zmm registers), 2 × 4 of
    8 lanes otherwise (16 ymm). A tile's weight rows over one reduction pass
    take half of a 32 KiB L1 (`reduction_block` = 16 KiB / (4 rows × the
    weights' element size)), over blocks of 32 rows. Outer-product tiles
    broadcast 12 weight rows across two vectors of rows with `avx512f`, 6
    otherwise (2N accumulators, two input vectors and a broadcast), from one
    vector of rows on (two for bf16 and f16 weights, which are widened to
    f32 once per pass first), in reduction passes whose transposed input
    slice takes the same half of L1.

    Each option other than -1 overrides that part of the choice (tuning,
    and tests of other targets' tiles); `strided-columns` is always taken
    from its option.
  }];
  let options = [
    Option<"tokenTile", "token-tile", "int64_t", /*default=*/"16",
           "Tokens per tile of moe.select, its router contraction fused in "
           "(0: all tokens at once)">,
    Option<"stridedColumns", "strided-columns", "bool", /*default=*/"true",
           "A dot-product tile's columns lie a tile count apart">,
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"-1",
           "f32 lanes per vector accumulator (-1: the target's)">,
    Option<"tileRows", "tile-rows", "int64_t", /*default=*/"-1",
           "Input rows per register tile (-1: the target's)">,
    Option<"tileWeightRows", "tile-weight-rows", "int64_t", /*default=*/"-1",
           "Weight rows per register tile (-1: the target's)">,
    Option<"reductionBlock", "reduction-block", "int64_t", /*default=*/"-1",
           "Reduction elements per pass (-1: the target's)">,
    Option<"rowBlock", "row-block", "int64_t", /*default=*/"-1",
           "Input rows whose partial sums a pass keeps (-1: the target's)">,
    Option<"broadcastWeightRows", "broadcast-weight-rows", "int64_t",
           /*default=*/"-1",
           "Weight rows per outer-product tile (-1: the target's)">,
    Option<"broadcastMinRows", "broadcast-min-rows", "int64_t",
           /*default=*/"-1",
           "Rows from which outer-product tiles are taken (-1: the "
           "target's)">,
    Option<"broadcastReductionBlock", "broadcast-reduction-block", "int64_t",
           /*default=*/"-1",
           "Reduction elements per outer-product pass (-1: the target's)">
  ];
}

def MoETileCPU : Pass<"moe-tile-cpu"> {
  let summary = "Tile, fuse and vectorize each op by its #moe.tiling";
  let description = [{
    Applies the `#moe.tiling` lowering configs of the linalg stage with
    upstream's drivers, level by level:

    1. `distribution`: `scf::tileConsumerAndFuseProducersUsingSCF` tiles the
       op in an `scf.forall`, whose tiles the threads share, and fuses into
       the tiles the linalg ops it reads that are not distributed
       themselves (a `moe.select`'s tile of tokens computes only that
       tile's router logits; an activation's tile of columns, the gate and
       up projections of those columns);
    2. `cache`: the same driver tiles each tile again in `scf.for` loops
       that carry the result (a contraction's reduction in blocks,
       accumulated), fusing the linalg ops the tile reads that have a tiling
       of their own and are neither contractions nor initial values (the
       widened weights, then made block by block);
    3. `registers`: `scf::tileUsingSCF` tiles the parallel loops, and each
       loop's partial last tile is peeled off, so full tiles have static
       shapes;
    4. `reduction`: `scf::tileReductionUsingScf` splits each tile's
       reduction into one partial sum per step element, merged after the
       loop, and `linalg::vectorize` turns the tile's fill, partial sums and
       merge into vector ops, their products and sums allowed to contract
       into FMAs; a peeled partial tile is first tiled by one along its
       dynamic loops, so no tile needs masks. The partial sums' reads and
       writes are hoisted out of the reduction loop, so they stay in
       registers.

    What is left of the packed form's `linalg.pack` and `linalg.unpack`
    becomes a pad, a reshape and a transpose (`linalg::lowerPack`,
    `linalg::lowerUnPack`), which bufferize. An applied config is removed;
    an op without a `#moe.tiling` is left alone.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects,
      ["::mlir::vector::VectorDialect", "::mlir::affine::AffineDialect"]);
}

def MoEBufferize : Pass<"moe-bufferize", "::mlir::ModuleOp"> {
  let summary = "One-Shot Bufferize, copying strided buffers with loops";
  let description = [{
    Upstream's One-Shot Bufferize with its default options, except for the
    copies it inserts: between buffers of identity layout a `memref.copy`
    (a `memcpy`), between strided ones (a tile written into its slice of
    a result) a `linalg.copy`, which becomes loops, where `memref.copy`
    would call the `memrefCopy` runtime function that a generated library
    does not link.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoELowerGate : Pass<"moe-lower-gate"> {
  let summary = "Lower moe.gate, moe.select and moe.refine to scf and memref";
  let description = [{
    A `moe.gate` is first decomposed (`moe-decompose-gate`); its router
    contraction stays a linalg op, for `moe-tile-cpu` or the scalar
    lowering. `moe.select` runs on buffers, in f32: a scratch copy of its
    logits becomes softmax (max-subtracted) or sigmoid scores row by row,
    then selection is a per-token loop nest (`scf.for`): grouped routing
    keeps the best `topk_group` groups, then `top_k` rounds each take the
    allowed expert with the largest choice value, the lower index winning
    ties and a NaN never beating a number, so the result is deterministic.
    Weights are then normalized and scaled, and with a capacity factor a
    second loop grants slots slot-major in token order and drops the rest
    (id -1, weight 0). Expert choice selects, for each expert, its
    highest-scoring tokens. A select tiled by tokens runs once per tile, so
    its scratch is on the heap (the deallocation pipeline frees it) rather
    than on a stack that would grow with the tiles.

    A dense mixture (`top_k` = E) whose gate is `unordered` skips selection
    altogether: slot e holds expert e, and only the scores' sum (for the
    normalization) remains, O(E) per token instead of O(E·top_k). Without
    `unordered` (the route kernel, capacity) the selection loop runs, so
    slots stay in descending choice order.

    `moe.refine` (an inner level of a hierarchy) runs the same scoring and
    selection per token and parent slot: the parent's `[E, H]` block of the
    stacked router (a rank-reduced subview) scores the token into a
    `[1, E]` row in register tiles of `vector-lanes`-wide f32 dot products,
    the selection writes the slot's `top_k` children into their block of
    the result, which then gets the parent's id offset and weight; a
    dropped parent slot drops all its children.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects,
      ["::mlir::vector::VectorDialect"]);
  let options = [
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"16",
           "f32 lanes per accumulator of moe.refine's router logits">
  ];
}

def MoELowerDispatch : Pass<"moe-lower-dispatch"> {
  let summary = "Lower moe.dispatch to a routing plan built at run time";
  let description = [{
    Three passes over the `[T, K]` ids, as `scf.for` loops over memrefs: a
    histogram of the slots each expert takes, the prefix sum of the counts
    each rounded up to `row_tile` (the padded segment offsets), and a stable
    counting sort that writes each slot into its expert's segment (`slots`)
    and the row back into `slot_rows`. Padding rows hold -1. Only indices
    move; the plan is O(T·K) integers.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoELowerExperts : Pass<"moe-lower-experts"> {
  let summary = "Lower moe.expert (with its moe.combine)";
  let description = [{
    `moe.expert` becomes a loop over experts on buffers; expert `e` runs its
    projections over its plan segment `[offsets[e], offsets[e+1])` as
    register-tiled dot products in the vector dialect: `tile-rows` input
    rows by `tile-weight-rows` weight rows, `vector-lanes`-wide f32
    accumulators along the reduction, each row loaded once per step, weights
    read in place from the stacked `[E, F, H]` / `[E, H, F]` buffers in
    their `nn.Linear` layout. Accumulation is in f32 whatever the data type.
    With `reduction-block` > 0, a longer reduction is cut into passes over
    blocks of `row-block` input rows, the accumulators kept between passes
    in a buffer per chunk of column tiles, so that a tile's weight rows
    stay in L1 while the block's input rows stream past them. With
    `strided-columns` (the default) a dot-product tile's columns lie the
    number of tiles apart rather than side by side, so that each thread,
    walking its consecutive tiles, reads its weight rows as
    `tile-weight-rows` long sequential streams rather than short runs of a
    few rows (Qwen3-30B-A3B in bf16 at one token: 4.0 against 5.5 ms a
    call on AVX2).

    With `broadcast-weight-rows` > 0, an expert with at least
    `broadcast-min-rows` rows takes outer-product tiles instead: its input
    rows are transposed once into f32 vectors of `vector-lanes` rows,
    `[rows / vector-lanes, k, vector-lanes]` (padded with zero rows to a
    multiple of `vector-lanes`), shared by every column tile, and a tile
    broadcasts one element of each of `broadcast-weight-rows` weight rows
    across two vectors of input rows (one for the last rows), so that each
    lane accumulates one row's sum and no horizontal sum is needed. Its
    column tiles form chunks across threads, each chunk as many tiles as
    keep one pass's weight rows within 64 KiB (but at least 64 chunks where
    there are that many tiles); with `broadcast-reduction-block` > 0 and
    more than one tile of rows (two vectors), a longer reduction runs in
    passes, each taking every tile of rows through all of the chunk's
    column tiles, the accumulators kept between passes in a buffer of the
    chunk, so a tile of rows' slice of the input stays in L1 while the
    chunk's weights stay in L2. One tile of rows takes one pass, which
    reads each weight row as one run rather than many short ones. bf16 and
    f16 weights are widened to f32 once per pass, into a buffer of the
    chunk's weight rows that every tile of rows reads. Fewer rows (decode)
    keep the dot products, which waste no lanes. Every dot-product column
    tile streams the expert's whole input, and every chunk of outer-product
    tiles its transposed copy, so an expert whose input passes 2 MiB as f32
    runs as the fewest blocks of rows that fit (of up to 128 rows all the
    same while their input fits 8 MiB, for long reductions), at most a row
    apart in size: a last block of a few rows would stream the weights again
    for little work.
    An op's `lowering_config` (`moe-configure-cpu` picks one for the
    module's target CPU) takes the place of these tiling options.

    Three fusions, each with a flag:

    * `fuse-gather`: the gate and up projections read their input rows
      through the plan (`x[slots[r] / K]`), so no permuted copy of `x`
      exists; off, each segment's rows are copied out first.
    * `fuse-activation`: a tile computes matching gate and up sums together
      and writes `act(gate) ⊙ up` straight into the `[rows, F]` hidden
      block; off, both `[rows, F]` projections are stored whole first.
    * `fuse-combine`: a `moe.combine` of a `moe.expert` is lowered with it:
      the down projection's epilogue scales each tile's sums by the slot's
      routing weight and adds them to the token's f32 output row, so the
      `[rows, H]` expert output never exists. Experts run in order, so the
      sum is deterministic. Off, `moe.expert` writes its `[rows, H]` result
      and `moe-lower-combine` gathers it.

    With a shared expert, the fused combine adds the routed experts into a
    copy of its output. A `moe.shared_expert` still whole is decomposed here
    as `moe-decompose-shared-expert` does, untiled (the CPU pipeline
    decomposes it on the linalg stage, where it is tiled). Experts without
    rows are skipped.

    With `parallel`, each projection's column tiles form an `scf.parallel`
    loop: threads own disjoint columns of the hidden block and of the
    token outputs, so there are no races and no atomics, and every output
    element is summed in the same order whatever the thread count.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects,
                                      ["::mlir::vector::VectorDialect"]);
  let options = [
    Option<"fuseGather", "fuse-gather", "bool", /*default=*/"true",
           "Read expert input rows through the plan (no gathered copy)">,
    Option<"fuseActivation", "fuse-activation", "bool", /*default=*/"true",
           "Compute act(gate) * up per tile (no whole gate/up)">,
    Option<"fuseCombine", "fuse-combine", "bool", /*default=*/"true",
           "Accumulate the down projection into the token outputs">,
    Option<"parallel", "parallel", "bool", /*default=*/"true",
           "Split each projection's column tiles across threads "
           "(scf.parallel)">,
    Option<"stridedColumns", "strided-columns", "bool", /*default=*/"true",
           "A dot-product tile's columns lie a tile count apart, not side "
           "by side">,
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"16",
           "f32 lanes per vector accumulator">,
    Option<"tileRows", "tile-rows", "int64_t", /*default=*/"4",
           "Input rows per register tile">,
    Option<"tileWeightRows", "tile-weight-rows", "int64_t", /*default=*/"4",
           "Weight rows per register tile (even: a gated tile pairs them)">,
    Option<"reductionBlock", "reduction-block", "int64_t", /*default=*/"0",
           "Reduction elements per pass over a block of rows; 0: one pass">,
    Option<"rowBlock", "row-block", "int64_t", /*default=*/"64",
           "Input rows whose partial sums one reduction pass keeps">,
    Option<"broadcastWeightRows", "broadcast-weight-rows", "int64_t",
           /*default=*/"0",
           "Weight rows per outer-product tile (even); 0: dot products only">,
    Option<"broadcastMinRows", "broadcast-min-rows", "int64_t",
           /*default=*/"16",
           "Rows from which an expert's projections take outer-product tiles">,
    Option<"broadcastReductionBlock", "broadcast-reduction-block", "int64_t",
           /*default=*/"0",
           "Reduction elements per pass of the outer-product tiles over "
           "more than one tile of rows; 0: one pass">
  ];
}

def MoELowerCombine : Pass<"moe-lower-combine"> {
  let summary = "Lower moe.combine to a gather-reduction in token order";
  let description = [{
    One `linalg.generic` over `(t, h, j)` with `j` a reduction: each token
    reads its expert rows through `slot_rows` and sums them weighted, in
    f32, on top of the shared expert's output when there is one; dropped
    slots (-1) add nothing. No scatter-add, no atomics: every output row has
    one writer. The f32 sum is rounded once to the result's element type.
  }];
  let dependentDialects = MoELoweringDialects;
}

//===----------------------------------------------------------------------===//
// The CUDA target
//===----------------------------------------------------------------------===//

def MoELowerToGPU : Pass<"moe-lower-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower the moe stage ops to GPU kernels over device buffers";
  let description = [{
    Replaces `moe.gate`, `moe.refine`, `moe.dispatch`, `moe.expert`,
    `moe.shared_expert` and `moe.combine` by `gpu.launch` kernels of 256
    threads per block, in host code that allocates their device buffers
    (`gpu.alloc`, freed by `moe-free-workspace`) and never waits for them:
    every size is known on the host, so the kernels run back to back on one
    stream.

    * gate: one thread per (token, expert) for the router logits, one per
      token for the scores and the selection of the CPU path (groups,
      top-k, normalization); capacity drops and the routing plan are scans
      with one block per expert; expert choice ranks each (token, expert)
      against the expert's other tokens in one thread. An `unordered`
      dense gate takes every expert without selecting, as on the CPU.
    * refine (an inner level of a hierarchy): one thread per (token, parent
      slot) scores the token with the parent's router block and runs the
      same selection, composed with the parent.
    * experts: the plan's row tiles are the blocks: a block computes
      `row-tile` rows × 64 columns of one expert's projection, staging
      16-wide slices of input and weight rows in shared memory, each thread
      a register tile, all in f32. Gate and up share a kernel whose
      epilogue writes `act(gate) ⊙ up`; the down projection writes f32 rows.
      The shared expert runs the same kernels over the tokens.
    * combine: one thread per output element sums the shared row and the
      token's weighted expert rows in slot order and rounds once, so the
      result's bits do not depend on scheduling.

    The plan (i64, as on the CPU) has its buffers sized for the most rows
    any routing can need, so that no kernel's grid depends on device data.
    `moe.dispatch` must pad to the kernels' `row-tile` (run
    `moe-expand{row-tile=64}`).

    With `emulate`, each kernel becomes a loop over its blocks whose
    threads run as an OpenMP team of 256 (`omp.barrier` for the barrier,
    shared memory on the stack): the same kernels run on the CPU, which is
    how the suite tests them without a GPU.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects, [
    "::mlir::func::FuncDialect", "::mlir::gpu::GPUDialect",
    "::mlir::omp::OpenMPDialect"]);
  let options = [
    Option<"emulate", "emulate", "bool", /*default=*/"false",
           "Run each block's threads as an OpenMP team on the CPU">,
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"64",
           "Plan rows per block of the expert kernels (a multiple of 16)">
  ];
}

def MoEFreeWorkspace : Pass<"moe-free-workspace", "::mlir::func::FuncOp"> {
  let summary = "Free the kernels' buffers where their function returns";
  let description = [{
    Every buffer `moe-lower-to-gpu` allocates (marked `moe.workspace`) is
    freed before each return of its function (`gpu.dealloc`, or
    `memref.dealloc` when emulated); on a stream the free is ordered after
    the kernels that use the buffer. Host code of a GPU function must not
    touch device memory, so any other allocation or copy left in it (by
    bufferization) is an error.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect"];
}

def MoEGPUUseStreamArgument
    : Pass<"moe-gpu-use-stream-argument", "::mlir::ModuleOp"> {
  let summary = "Run a function's GPU work on the stream it is given";
  let description = [{
    After `gpu-async-region` and `gpu-to-llvm`, a function's kernels,
    allocations and frees run on a stream that `mgpuStreamCreate` made and
    that the function synchronizes and destroys before it returns. In a
    function with an argument named `stream` (`moe.name`), that argument is
    used instead, and the synchronization goes: the caller's stream orders
    the work and the caller decides when to wait.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def MoEGPUEmbedFatbin : Pass<"moe-gpu-embed-fatbin", "::mlir::ModuleOp"> {
  let summary = "One fat binary of every target's cubin and the newest PTX";
  let description = [{
    Runs on the `gpu.binary` ops that `gpu-module-to-binary{format=isa}`
    left, one PTX object per NVVM target: assembles each with the CUDA
    toolkit's `ptxas` into a cubin for its chip, and packs the cubins, plus
    the PTX of the newest chip for GPUs newer than any of them, into one
    fat binary with `fatbinary`. The binary keeps that single object, so
    the host code loads it once and the driver picks the image that fits
    the device; tools such as `cuobjdump` list its images.
  }];
  let options = [
    Option<"toolkit", "toolkit", "std::string", /*default=*/"\"\"",
           "The CUDA toolkit's root (bin/ptxas, bin/fatbinary)">
  ];
}

#endif // MOE_CONVERSION_PASSES_TD
