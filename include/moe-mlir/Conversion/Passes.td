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
  let summary = "Split moe.gate and moe.refine into their router contractions and selections";
  let description = [{
    The first half of the linalg stage: each `moe.gate` becomes the router
    logits as a `linalg.matmul` on tensors (`[T, H] × [E, H]^T` with the
    router in its `nn.Linear` layout, accumulated in f32 from the widened
    `router_bias` or from zero) and a `moe.select` that turns the logits
    into ids and weights. The contraction is then upstream's to tile and
    vectorize, and the select, which implements TilingInterface over its
    tokens, is where the gate's tile of tokens is chosen, its producers
    fused into the tile loop.

    Each `moe.refine` (an inner level of a hierarchy, P parents of E
    experts each) becomes the logits of every parent's router at once, a
    `linalg.matmul` with the stacked routers viewed as `[P · E, H]` (their
    biases as `[P · E]`), viewed as `[T, P, E]` by a `moe.refine_select`
    that scores and selects each slot's children from its parent's row. A
    token computes P · E logits where its parents need K · E: a small price
    beside its experts' FFNs, for a contraction tiled like the gate's.
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
      cache block of rows.

    With a dynamic token count an `scf.if` chooses the form at run time.
    With an `expert_gate`, `sigmoid(x_t · expert_gate)`, a reduction, then
    scales the rows. The lanes are the module target's (`moe.target`): 16
    with `avx512f`, 8 otherwise or without a target (`vector-lanes`
    overrides them). `moe-configure-cpu`
    gives each op its tiling and `moe-tile-cpu` tiles, fuses and
    vectorizes it with upstream's drivers.
  }];
  let options = [
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"-1",
           "f32 lanes the packed form groups rows by (-1: the target's)">
  ];
  let dependentDialects = MoELoweringDialects;
}

def MoEDecomposeExperts : Pass<"moe-decompose-experts"> {
  let summary = "Split moe.expert into linalg contractions, one segment at a time";
  let description = [{
    The routed experts on the linalg stage: an `scf.for` over the experts
    takes each expert's plan segment `[offsets[e], offsets[e+1])`, skips it
    when it is empty, and builds that expert's FFN over the segment's rows
    in the forms `moe-decompose-shared-expert` uses (the weights and biases
    of expert `e` are `tensor.extract_slice`s of the stacked ones, read in
    place): row-wise below one vector of rows (two for bf16 and f16
    weights), packed from there on. The rows are read through the plan,
    `x[slots[r] / K]`, scaled by their routing weight with
    `input_weights`, by a `linalg.generic` that writes them as the form
    reads them: `[rows, H]` for the row-wise form, and with `fuse-gather`
    straight into the packed `[⌈rows / L⌉, H, L]`; without it the rows are
    copied out first and then packed. Each projection starts from its
    bias, broadcast, or from zeros.

    With `fuse-combine`, a `moe.combine` whose expert output is that of a
    `moe.expert` alone is decomposed with it: each segment's rows, scaled
    by their routing weights, are added into their tokens' f32 output rows
    (`tensor.extract_slice`, an elementwise generic, `tensor.insert_slice`,
    in place after bufferization), starting from the shared expert's output
    or zeros, so that the `[rows, H]` expert output never exists. Experts
    run in order, so the sum is deterministic. Otherwise each segment's
    output, its padding rows zeroed, is inserted at its rows of the
    `[rows, H]` result, and `moe-lower-combine` gathers it.
  }];
  let options = [
    Option<"fuseGather", "fuse-gather", "bool", /*default=*/"true",
           "Gather the packed form's rows straight into their layout">,
    Option<"fuseCombine", "fuse-combine", "bool", /*default=*/"true",
           "Add each segment's rows into the combined output">,
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"-1",
           "f32 lanes the packed form groups rows by (-1: the target's)">
  ];
  let dependentDialects = MoELoweringDialects;
}

def MoEDecomposeGrouped : Pass<"moe-decompose-grouped"> {
  let summary = "Split moe.expert and moe.shared_expert into grouped contractions over all their rows";
  let description = [{
    The GPU's form of the linalg stage: each FFN runs over all its rows at
    once, viewed as `[tiles, row-tile]`, so that a tile of rows is one
    block's work and has a static size.

    * `moe.expert`: the plan's rows (the plan pads every segment to whole
      row tiles, and its rows are a whole number of them: a `moe.dispatch`
      must have the pass's `row-tile`, which `moe-expand{row-tile}` sets;
      a plan from elsewhere must keep to it); a row `(t, i)`
      reads input row `slots[r] / K` (-1 for a padding row) and tile `t`
      the weights of its expert, the number of segments that end at or
      before its first row;
    * `moe.shared_expert`: the tokens, padded to whole row tiles; the
      result is the first `T` rows.

    Each projection is one `linalg.generic` contraction over `(t, i, n, k)`
    whose body reads the row's input and its expert's weights with
    `tensor.extract`, so neither the rows nor an expert's weights are
    copied; the row's token, routing weight (`input_weights`) and expert
    are small generics that the tiling fuses into each tile. The
    activation (with the routing weight and the biases) and the down
    projection's epilogue (its bias, the shared expert's `expert_gate`
    sigmoid, zero for a row without input) are elementwise generics.
    `moe-configure-gpu` gives each its tiling and `moe-tile-gpu` applies
    it.
  }];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"64",
           "Rows per tile: the plan's row_tile">
  ];
  let dependentDialects = MoELoweringDialects;
}

def MoEConfigureCPU : Pass<"moe-configure-cpu", "::mlir::ModuleOp"> {
  let summary = "Choose each op's CPU tiling from the module's target";
  let description = [{
    Reads the module's `moe.target` (`#moe.cpu_target`, which moe-compile
    sets from `--march`) and attaches a `#moe.tiling` as `lowering_config`
    to every op of the linalg stage without one, which `moe-tile-cpu`
    applies. The lanes are 16 with `avx512f`, 8 otherwise (`vector-lanes`
    overrides them):

    * a row-wise contraction (one M, one N and a static K loop: the router
      logits, the projections of a segment of few rows where 4 does not
      divide them) a register tile of 2 × 4, its N loop outermost, over a
      split reduction of one vector's lanes (or the largest power of two
      below that divides K); one over streamed weight rows (N loops (s,
      j): the projections of few rows) the same, 4 being one row of each
      stream. Accumulators take half the vector registers and the rows
      loaded per step most of the rest;
    * a packed contraction (M loops (g, l), l one vector's lanes) a
      register tile of 6 columns (12 with `avx512f`) × 2 groups × the lanes,
      one reduction step at a time (2N accumulators, the two groups and one
      broadcast weight), its groups' loop outside its columns', in cache
      blocks of 256 rows whose packed input stays in L2 while a thread's
      columns pass (the reduction is not blocked, so that each weight row
      is read as one long run); the generic that widens its bf16 or f16
      weights a register tile of one row of lanes;
    * a contraction not read by a `moe.select`: its columns distributed
      across threads in at most 64 tiles of whole register tiles. With
      `fuse-activation` this goes through its elementwise consumer (the
      activation) when it has one, so that it is fused into that
      consumer's tiles; without, both are distributed on their own. A
      linalg op that makes its rows (a segment's rows gathered through the
      plan) is distributed along its columns on its own, so that the
      column tiles do not each make it again;
    * a token-choice `moe.select` without capacity its tile of
      `token-tile` tokens (0: none, so the whole `[T, E]` logits exist at
      once).

    A module without a target is left as it is: the linalg stage's ops
    stay untiled (the scalar lowering runs them).
  }];
  let options = [
    Option<"tokenTile", "token-tile", "int64_t", /*default=*/"16",
           "Tokens per tile of moe.select, its router contraction fused in "
           "(0: all tokens at once)">,
    Option<"fuseActivation", "fuse-activation", "bool", /*default=*/"true",
           "Fuse the gate and up contractions into the activation's tiles">,
    Option<"vectorLanes", "vector-lanes", "int64_t", /*default=*/"-1",
           "f32 lanes of a vector (-1: the target's)">
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
       that carry the result (a contraction's rows in blocks, or its
       reduction, accumulated), fusing the linalg ops the tile reads that have a tiling
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

def MoEConfigureGPU : Pass<"moe-configure-gpu", "::mlir::ModuleOp"> {
  let summary = "Choose the GPU tiling of the grouped FFNs' and combine's kernels";
  let description = [{
    Attaches a `#moe.tiling` as `lowering_config` to the ops of the grouped
    form (`moe-decompose-grouped`) for `moe-tile-gpu`. A kernel ends at a
    linalg op whose result another linalg op reads along a reduction loop
    (the activation, which the down projection reads whole rows of) or
    that no linalg op reads; every other linalg op is fused into its
    readers' tiles. An op that ends a kernel gets, with loops `(t, i, n)`
    (or `(t, i, n, k)`) of `row-tile` rows and static `N` (an FFN's):

    * `distribution = [1, R, C]`: a block takes one tile of `R` rows (the
      row tile) and `C` columns, the largest power of two up to 64 that
      divides `N`, so that every tile is whole;
    * `threads = [1, R / 16, max(1, C / 16)]`: 16 threads along the rows
      and `min(C, 16)` along the columns (256 for 64 columns), each a
      register tile;

    with loops `(t, n)` (or `(t, n, j)`) over the tokens and static `N`
    (combine's, token-wise): `distribution = [256 / C, C]`, `C` the
    largest power of two up to 256 that divides `N`, and `threads = [1,
    1]`, an element a thread (the last block may have fewer tokens; a
    thread's tile is whole). Any other op that ends a kernel is an error.

    Every op with reduction loops (a projection's contraction, a tile's
    expert, the shared expert's gate) gets `reduction` steps of one along
    them: a thread steps through its reduction carrying its tile's sums.
    The tiling reads no target: the SIMT kernels are the same on every
    `gpu_arch`.

    With `tensor-cores` (every `gpu_arch` sm_80 or newer), a grouped FFN
    kernel whose every projection multiplies 16-bit floats (bf16 or f16
    weights, the input in that type or f32) runs on tensor cores instead:
    its projections and its last op are marked `moe.mma_sync = [16, 8,
    16]` (the `mma.sync` shape) and the projections get no lowering
    config (they are fused whole into the warps' tiles). The last op gets
    the same `distribution` and `threads = [1, 16, min(C, 32)]`, each
    thread level tile a warp's: 16 rows and up to four 8-column fragments.
  }];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"64",
           "Rows per block: the plan's row_tile, a multiple of 16">,
    Option<"tensorCores", "tensor-cores", "bool", /*default=*/"false",
           "Run 16-bit projections as mma.sync (sm_80 and newer)">
  ];
}

def MoETileGPU : Pass<"moe-tile-gpu"> {
  let summary = "Tile each GPU kernel into blocks and threads, and vectorize each thread's tile";
  let description = [{
    Applies the `#moe.tiling` of `moe-configure-gpu` with upstream's
    drivers: `scf::tileConsumerAndFuseProducersUsingSCF` tiles each kernel's
    op by its `distribution` in an `scf.forall` (the blocks) and each block's
    tile by its `threads` in a nested `scf.forall` (the threads), fusing the
    ops it reads into both, and a fill of a loop's own output made slice by
    slice in it; a scratch tensor made outside a thread's loop is made in
    it, so that no two threads share one. Each of a thread's
    reductions is tiled by its `reduction` steps (`scf::tileUsingSCF`, the
    tile carried through the loop) and the thread's ops, steps included,
    are vectorized by `linalg::vectorize`, the bodies' `tensor.extract`s
    becoming gathers. The sums' reads and writes are hoisted out of the
    reduction loop, so they stay in registers. The kernels' names
    (`moe.kernel`) are recorded on the function, in order, as
    `moe.kernels`. A linalg op left outside the thread loops is an error.

    After bufferization the loops become GPU kernels (`scf.forall` to
    `scf.parallel`, mapped to blocks and threads by `moe-map-kernel-loops`,
    then `convert-parallel-loops-to-gpu`), or OpenMP loops when emulated.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects,
      ["::mlir::vector::VectorDialect", "::mlir::affine::AffineDialect",
       "::mlir::gpu::GPUDialect"]);
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
  let summary = "Lower moe.gate, moe.select, moe.refine and moe.refine_select to scf and memref";
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

    A `moe.refine` (an inner level of a hierarchy) is decomposed too, and
    its `moe.refine_select` runs the same scoring and selection per token
    and parent slot: the parent's row of the token's logits is copied into
    a `[1, E]` scratch row and scored there, the selection writes the
    slot's `top_k` children into their block of the result, which then gets
    the parent's id offset and weight; a dropped parent slot drops all its
    children.
  }];
  let dependentDialects = MoELoweringDialects;
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

def MoELowerCombine : Pass<"moe-lower-combine"> {
  let summary = "Lower moe.combine to a gather-reduction in token order";
  let description = [{
    One `linalg.generic` over `(t, h, j)` with `j` a reduction: each token
    reads its expert rows through `slot_rows` and sums them weighted, in
    f32, on top of the shared expert's output when there is one; dropped
    slots (-1) add nothing. No scatter-add, no atomics: every output row has
    one writer. The f32 sum is rounded once to the result's element type.
    The op that makes the result is named `combine` (`moe.kernel`), the
    GPU kernel it ends there.

    Without `accumulate-into-shared` the sum starts from zero and the
    shared expert's row is added after it, with the bias: the GPU's tiles
    then read the shared output rather than write it, so no thread copies
    its slice of it.
  }];
  let options = [
    Option<"accumulateIntoShared", "accumulate-into-shared", "bool",
           /*default=*/"true",
           "Sum the expert rows into the shared expert's output in place">
  ];
  let dependentDialects = MoELoweringDialects;
}

//===----------------------------------------------------------------------===//
// The CUDA target
//===----------------------------------------------------------------------===//

def MoELowerToGPU : Pass<"moe-lower-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower the moe stage ops to GPU kernels over device buffers";
  let description = [{
    Replaces `moe.gate`, `moe.refine` and `moe.dispatch` by `gpu.launch`
    kernels of 256 threads per block, in host code that allocates their device buffers
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
    * experts and combine: `moe.expert`, `moe.shared_expert` and
      `moe.combine` are not lowered here but on the linalg stage
      (`moe-decompose-grouped`, `moe-lower-combine`, `moe-configure-gpu`,
      `moe-tile-gpu`), whose tiled loops become kernels after
      bufferization.

    The plan (i64, as on the CPU) has its buffers sized for the most rows
    any routing can need, so that no kernel's grid depends on device data.

    With `emulate`, each kernel becomes loops on the host: its blocks one
    after the other, and in each block one loop over its 256 threads per
    stretch between two barriers (a schedule the barriers allow), the last
    thread first, so that a missing barrier before a read of what a lower
    thread wrote gives a wrong result. What a stretch uses of an earlier
    one is recomputed; shared memory is on the stack, and so is a thread's
    scratch, hoisted before the blocks for the threads to take turns with.
    The same kernels run on the CPU, which is how the suite tests them
    without a GPU.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects, [
    "::mlir::func::FuncDialect", "::mlir::gpu::GPUDialect"]);
  let options = [
    Option<"emulate", "emulate", "bool", /*default=*/"false",
           "Run each block's threads as loops on the CPU">
  ];
}

def MoEGPUMMASync : Pass<"moe-gpu-mma-sync", "::mlir::func::FuncOp"> {
  let summary = "Write the warps of tensor-core kernels as lanes that run mma.sync";
  let description = [{
    After bufferization, each `scf.forall` over warps (`#gpu.warp`
    mapping, made by `moe-tile-gpu` for a kernel `moe-configure-gpu`
    marked `moe.mma_sync`) becomes one over `(warp, lane)`: 32 lanes a
    warp along the threads' x, marked `moe.warp_lanes`. In it the warp's
    projections and the op that ends the kernel become lane code:

    * each projection's sums are `[16, 8]` fragments (`vector<2x2xf32>`,
      from its output's fill) carried through an `scf.for` over the
      reduction in steps of 16, each step one `nvgpu.mma.sync` (m16n8k16)
      a fragment;
    * a lane reads the elements of its A (`vector<4x2>`) and B
      (`vector<2x2>`) fragments itself, where upstream's
      `nvgpu::getLaneIdAndValueIdToOperandCoord` places them, by cloning
      the projection's body at each element's loops (its gathers
      included); an f32 multiplicand (the activation) is rounded to the
      weights' 16-bit type, and a partial last step reads zeros;
      what is the same at every step (a row's token from the plan, the
      index arithmetic) moves before the loop (upstream's
      `moveLoopInvariantCode`; the loop writes no memory, so its
      invariant loads move too);
    * the op that ends the kernel runs its body on each element of the
      sums' fragments and stores where it stored.

    A lane's fragments are the types upstream's
    `nvgpu::getMmaSyncRegisterType` gives mma.sync's registers. Every
    warps' loop of the function is checked before any is rewritten (whole
    16 × 8 fragments, one op that ends the projections, over their tile,
    reading each sum where it runs, nothing else reading the sums, and
    each sums' buffer written once before its projection, by a fill or a
    copy of a filled buffer, whose value the fragments start from), so
    that a function the pass refuses is left as it was.

    `permute-fragments` swaps two registers of the A fragments' layout;
    it exists so that tests can show the emulated kernels fail with a
    misplaced fragment.
  }];
  let options = [
    Option<"permuteFragments", "permute-fragments", "bool",
           /*default=*/"false",
           "Misplace A fragments' registers 1 and 2 (for tests)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::vector::VectorDialect"];
}

def MoEEmulateWarps : Pass<"moe-emulate-warps", "::mlir::ModuleOp"> {
  let summary = "Run each warp's lanes together on the CPU, warp-level ops as the PTX ISA defines them";
  let description = [{
    Rewrites each `scf.forall` over `(warp, lane)` (`moe.warp_lanes`) into
    one over warps whose body runs the 32 lanes at once: a value that
    depends on the lane becomes a vector with a trailing dimension of 32
    lanes (a scalar `vector<32xT>`, a `vector<4x2xT>` fragment
    `vector<4x2x32xT>`), elementwise ops apply to it as they are, and
    loads and stores at lane-dependent places become a loop over the
    lanes. Values that do not depend on the lane stay scalar, so the
    warp's shared work runs once. The lanes hold 16-bit floats in f32,
    exactly: they are loaded, stored, selected, moved and rounded to
    (`arith.truncf`), other arithmetic on them is an error.

    `nvgpu.mma.sync` m16n8k16 (f16 or bf16 with f32 sums) becomes a call
    of the module's `moe_emulated_mma_m16n8k16` (made once, not inlined;
    each product of two 16-bit floats is exact in f32), which gathers its operands from the lanes' registers with the
    fragment layouts of the PTX ISA's `mma.sync` section, written out here
    independently of the layouts the kernels are built with: a fragment
    element in the wrong lane or register changes the result. A `gpu.shuffle` moves values
    between lanes as the `shfl.sync` that upstream lowers it to: with b
    the offset's low 5 bits, lane l reads lane l ^ b, l + b, l - b or b,
    valid below `width` (for `up`, from 32 - `width` on), else its own
    value.

    A buffer the lanes' loop allocates, each lane's own on a GPU, is made
    once a warp: a store to it that depends on the lane is an error.
    Anything else that depends on the lane is an error too: the warp's
    code must not branch on it.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::func::FuncDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::vector::VectorDialect"];
}

def MoEMMASyncToNVVM : Pass<"moe-mma-sync-to-nvvm"> {
  let summary = "Lower bf16 nvgpu.mma.sync to nvvm.mma.sync";
  let description = [{
    Upstream's `convert-nvgpu-to-nvvm` takes `nvgpu.mma.sync` on f16, tf32,
    f64 and integers, not bf16. This pass lowers the bf16 m16n8k16 form
    (f32 sums) to `nvvm.mma.sync` with bf16 multiplicands: each register a
    pair of bf16 in an i32, the sums four f32. Run it before upstream's
    conversion, which lowers the rest.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect",
                           "::mlir::NVVM::NVVMDialect",
                           "::mlir::vector::VectorDialect"];
}

def MoEPlaceBuffers : Pass<"moe-place-buffers", "::mlir::func::FuncOp"> {
  let summary = "Put the bufferized linalg stage's buffers where its GPU kernels can use them";
  let description = [{
    After bufferization, a buffer that a thread's tile allocates (inside
    two nested `scf.forall`s, the blocks' and the threads') becomes the
    thread's own (`memref.alloca`; emulated, a heap buffer freed at the end
    of its block, since OpenMP loops' `memref.alloca_scope`s do not take
    loops lowered to branches), and one that the function's body
    allocates a device buffer (`gpu.alloc`, or `memref.alloc` when
    emulated) marked for `moe-free-workspace`. A buffer in a block's tile
    outside its threads' is an error (the threads would share it); any
    other is left to `moe-free-workspace`, which refuses host allocations.
  }];
  let options = [
    Option<"emulate", "emulate", "bool", /*default=*/"false",
           "Host buffers, for kernels emulated on the CPU">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect"];
}

def MoEMapKernelLoops : Pass<"moe-map-kernel-loops", "::mlir::func::FuncOp"> {
  let summary = "Map the tiled linalg stage's parallel loops to blocks and threads";
  let description = [{
    Gives each `scf.parallel` of a tile nest its `gpu.loop_dim_map`s for
    `convert-parallel-loops-to-gpu`: an outermost loop's dimensions are the
    blocks' x, y and z in order (the row tiles along x); the loop nested in
    it is the threads', its last dimension (the columns, contiguous in the
    result) along x, so that consecutive threads write consecutive
    columns; deeper loops stay sequential.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def MoENameKernels : Pass<"moe-name-kernels", "::mlir::func::FuncOp"> {
  let summary = "Put the linalg stage's kernels into the moe_kernels module";
  let description = [{
    Names each `gpu.launch` that `convert-parallel-loops-to-gpu` made from
    the tiled linalg stage after the kernel it is (`<function>_expert_up`,
    `_expert_down`, `_shared_up`, `_shared_down`, `_combine`: the names `moe-tile-gpu`
    recorded on the function as `moe.kernels`, in order) in the
    `moe_kernels` module, where `moe-lower-to-gpu` puts its kernels, so that
    outlining makes one module of them all.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
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
