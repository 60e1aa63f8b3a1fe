/* expert_parallel_mpi: one MoE layer split over MPI ranks by expert, each rank
 * linking the expert-shard library moe-compile built for it.
 *
 *   mpirun -np 1 rank0/expert_parallel_mpi [options] T_0 ... T_{R-1} : \
 *          -np 1 rank1/expert_parallel_mpi [options] T_0 ... T_{R-1} : ...
 *
 *   --seed N     seed of the weights and tokens (default 1)
 *   --dump FILE  rank 0 writes the weights and every rank's x and y to FILE
 *
 * Rank r of R holds experts [r*E/R, (r+1)*E/R) and takes T_r tokens (0 is
 * fine). Per call each rank routes its own tokens, sends every kept slot's
 * row of x to the rank holding its expert (MPI_Alltoallv), runs
 * run_experts on the rows it received, sends the results back the same way
 * and combines them with its shared expert into y. Each rank then prints
 *
 *   rank=<r> experts=[<first>,<end>) tokens=<T_r> rows_sent=<n> rows_received=<n>
 *
 * and rank 0 adds `ranks=<R> tokens=<sum of T_r> checksum=<sum of every y>`.
 *
 * The library is chosen at build time (see README.md in this folder):
 *
 *   -DMOE_HEADER='"<name>.h"' -DMOE_PREFIX=<name> -DMOE_MACRO=<NAME>
 *   -DMOE_GATED=1 -DMOE_SHARED_GATE=0
 *   -DMOE_ROUTER_BIAS=0 -DMOE_SELECTION_BIAS=0           (these defaults)
 *
 * MOE_MACRO is the name in upper case, the prefix of the header's macros: the
 * sizes and the shard are read from them. Only f32 layers with token-choice
 * routing and one level of experts are supported.
 *
 * --dump writes, all little-endian: the 8 bytes "MOEEPv1\0", int64 R, int64
 * T_0..T_{R-1}, then as f32 the full weights the layer uses (in the order of
 * the weights struct), every rank's x one after the other, then their y.
 */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MOE_HEADER
#error "define MOE_HEADER, e.g. -DMOE_HEADER='\"mixtral.h\"'"
#endif
#ifndef MOE_PREFIX
#error "define MOE_PREFIX, the library's name, e.g. -DMOE_PREFIX=mixtral"
#endif
#ifndef MOE_MACRO
#error "define MOE_MACRO, the library's name in upper case, e.g. -DMOE_MACRO=MIXTRAL"
#endif
#ifndef MOE_GATED
#define MOE_GATED 1
#endif
#ifndef MOE_SHARED_GATE
#define MOE_SHARED_GATE 0
#endif
#ifndef MOE_ROUTER_BIAS
#define MOE_ROUTER_BIAS 0
#endif
#ifndef MOE_SELECTION_BIAS
#define MOE_SELECTION_BIAS 0
#endif

#include MOE_HEADER

/* Two levels so that the prefixes are expanded before they are pasted. */
#define MOE_CAT_(a, b) a##b
#define MOE_CAT(a, b) MOE_CAT_(a, b)
#define MOE(suffix) MOE_CAT(MOE_PREFIX, suffix)
#define MOE_M(suffix) MOE_CAT(MOE_MACRO, suffix)

typedef MOE(_weights) moe_weights;
typedef MOE(_context) moe_context;

static int world_rank = 0;

/* Any failure ends every rank: the others would otherwise wait forever in
   the next collective. */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "expert_parallel_mpi: rank %d: ", world_rank);
  vfprintf(stderr, fmt, args);
  fputc('\n', stderr);
  va_end(args);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1); /* not reached: MPI_Abort does not return */
}

/* MPI_COMM_WORLD returns its error codes (MPI_ERRORS_RETURN, set in main)
   so that this can name the call that failed. */
static void mpi_check(int code, const char *call) {
  if (code == MPI_SUCCESS)
    return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "error %d", code);
  fail("%s failed: %s", call, msg);
}
#define MPI_CHECK(call) mpi_check((call), #call)

static void moe_check(int code, const char *call) {
  if (code == 0)
    return;
  const char *msg = MOE(_strerror)(code);
  fail("%s failed (%d): %s", call, code, msg ? msg : "(no message)");
}

/* n elements of `size` bytes, zeroed; never NULL, so that every pointer the
   program hands on is a real one, whatever its count. */
static void *alloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    fail("out of memory allocating %zu elements of %zu bytes", n, size);
  return p;
}

/* An MPI count (an int) of n elements. */
static int mpi_count(int64_t n) {
  if (n < 0 || n > INT_MAX)
    fail("%lld elements do not fit in an MPI count", (long long)n);
  return (int)n;
}

/* splitmix64: tiny, and identical on every platform, so every rank makes the
   same weights from the same seed. */
static uint64_t next_u64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* n floats uniform in [-scale, scale) when `needed`, else NULL. */
static float *make_array(int needed, size_t n, float scale, uint64_t *state) {
  if (!needed)
    return NULL;
  float *a = alloc(n, sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    double u = (double)(next_u64(state) >> 11) * (1.0 / 9007199254740992.0);
    a[i] = (float)((2.0 * u - 1.0) * scale);
  }
  return a;
}

/* sqrt(3 / fan_in): uniform weights of this range keep each projection's
   output at the variance of its input. */
static float fan_in_scale(size_t fan_in) {
  return (float)sqrt(3.0 / (double)(fan_in ? fan_in : 1));
}

static long long parse_count(const char *text, const char *what) {
  char *end;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end || v < 0 || v == LLONG_MAX)
    fail("%s must be an integer >= 0, got '%s'", what, text);
  return v;
}

/* The first expert of rank r: shards as even as integer division makes them. */
static int64_t shard_first(int64_t r, int64_t E, int64_t R) { return r * E / R; }

/* Moves rows of `width` floats between the order they travel in, (source
   rank, local expert, row), and the order run_experts takes, (local expert,
   source rank, row). Block (s, i), blocks[s * B + i] rows of local expert i
   from rank s, starts at row block_at[s * B + i] in travel order. */
static void regroup(const float *src, float *dst, size_t width, const int64_t *blocks,
                    const int64_t *block_at, int R, int B, int count, int to_grouped) {
  size_t grouped = 0;
  for (int i = 0; i < count; ++i)
    for (int s = 0; s < R; ++s) {
      size_t travel = (size_t)block_at[s * B + i], n = (size_t)blocks[s * B + i];
      if (to_grouped)
        memcpy(dst + grouped * width, src + travel * width, n * width * sizeof(float));
      else
        memcpy(dst + travel * width, src + grouped * width, n * width * sizeof(float));
      grouped += n;
    }
}

static void write_all(FILE *f, const void *data, size_t size, size_t n, const char *path) {
  if (n && fwrite(data, size, n, f) != n)
    fail("cannot write %s", path);
}

int main(int argc, char **argv) {
  MPI_CHECK(MPI_Init(&argc, &argv));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  int R;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &R));
  const int rank = world_rank;

  /* Every rank gets the same arguments and takes its own token count. */
  uint64_t seed = 1;
  const char *dump = NULL;
  int ntokens = 0;
  long long T_rank = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = (uint64_t)parse_count(argv[++i], "--seed");
    else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
      dump = argv[++i];
    else if (argv[i][0] == '-' && argv[i][1] != '\0')
      fail("unknown option '%s'; usage: [--seed N] [--dump FILE] T_0 ... T_{R-1}", argv[i]);
    else if (ntokens++ == rank)
      T_rank = parse_count(argv[i], "a token count");
  }
  if (ntokens != R)
    fail("got %d token counts for %d ranks, want one per rank", ntokens, R);

  const size_t H = MOE_M(_HIDDEN_SIZE), F = MOE_M(_INTERMEDIATE_SIZE);
  const size_t FS = MOE_M(_SHARED_INTERMEDIATE_SIZE);
  const int E = MOE_M(_NUM_EXPERTS), W = MOE_M(_ROUTE_WIDTH);
  const int first = MOE_M(_EXPERT_SHARD_FIRST), count = MOE_M(_EXPERT_SHARD_COUNT);
  const int gated = MOE_GATED, shared = FS > 0;
  if (T_rank > MOE_M(_MAX_TOKENS))
    fail("%lld tokens are more than the library takes", T_rank);
  const size_t T = (size_t)T_rank;

  /* Each rank checks that it linked the shard the layout gives it: a
     library built for another rank would compute the wrong experts. */
  if (first != shard_first(rank, E, R) || first + count != shard_first(rank + 1, E, R))
    fail("with %d ranks this rank holds experts [%lld, %lld) of %d, but its library was "
         "built for [%d, %d)",
         R, (long long)shard_first(rank, E, R), (long long)shard_first(rank + 1, E, R), E,
         first, first + count);
  /* The library's normalized config says what its macros do not. */
  if (!strstr(MOE(_config_json)(), "\"dtype\":\"f32\""))
    fail("this example supports f32 layers only");
  if (strstr(MOE(_config_json)(), "\"expert\":"))
    fail("this example supports one level of experts only");

  /* The full weights, identical on every rank. A real runtime would load
     only its shard's experts; the dump needs all of them. */
  uint64_t state = seed;
  float *router = make_array(1, (size_t)E * H, 2.0f * fan_in_scale(H), &state);
  float *router_bias = make_array(MOE_ROUTER_BIAS, (size_t)E, 0.5f, &state);
  float *selection_bias = make_array(MOE_SELECTION_BIAS, (size_t)E, 0.5f / (float)E, &state);
  float *gate = make_array(gated, (size_t)E * F * H, fan_in_scale(H), &state);
  float *up = make_array(1, (size_t)E * F * H, fan_in_scale(H), &state);
  float *down = make_array(1, (size_t)E * H * F, fan_in_scale(F), &state);
  float *sgate = make_array(gated && shared, FS * H, fan_in_scale(H), &state);
  float *sup = make_array(shared, FS * H, fan_in_scale(H), &state);
  float *sdown = make_array(shared, H * FS, fan_in_scale(FS), &state);
  float *segate = make_array(shared && MOE_SHARED_GATE, H, fan_in_scale(H), &state);
  /* This rank's tokens: a stream of its own, unit variance. */
  uint64_t x_state = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(rank + 1));
  float *x = make_array(1, T * H, 1.7320508f, &x_state);

  moe_context *ctx = NULL;
  {
    /* The shard takes its own experts' slices of gate/up/down; the router
       and the shared expert whole. */
    const size_t expert = F * H;
    moe_weights w = {
        .router = router,
        .router_bias = router_bias,
        .selection_bias = selection_bias,
        .gate_proj = gated ? gate + (size_t)first * expert : NULL,
        .up_proj = up + (size_t)first * expert,
        .down_proj = down + (size_t)first * expert,
        .shared_gate_proj = sgate,
        .shared_up_proj = sup,
        .shared_down_proj = sdown,
        .shared_expert_gate = segate,
    };
    moe_check(MOE(_create)(&w, &ctx), "create");
  }

  /* 1. Route this rank's tokens: W slots per token, id -1 where dropped. */
  int32_t *ids = alloc(T * (size_t)W, sizeof(int32_t));
  float *topk_w = alloc(T * (size_t)W, sizeof(float));
  moe_check(MOE(_route)(ctx, x, (int64_t)T, ids, topk_w), "route");

  /* 2. Sort the kept slots by expert (a stable counting sort). Experts are
     numbered rank after rank, so this also groups them by destination, and
     within one destination by its local expert, as run_experts wants. */
  int64_t *per_expert = alloc((size_t)E + 1, sizeof(int64_t));
  for (size_t s = 0; s < T * (size_t)W; ++s) {
    if (ids[s] < -1 || ids[s] >= E)
      fail("route returned expert %d", (int)ids[s]);
    if (ids[s] >= 0)
      ++per_expert[ids[s] + 1];
  }
  for (int e = 0; e < E; ++e) /* per_expert[e] becomes expert e's first row */
    per_expert[e + 1] += per_expert[e];
  const int64_t sent = per_expert[E];
  size_t *order = alloc((size_t)sent, sizeof(size_t)); /* sent row -> slot */
  {
    int64_t *next = alloc((size_t)E, sizeof(int64_t));
    memcpy(next, per_expert, (size_t)E * sizeof(int64_t));
    for (size_t s = 0; s < T * (size_t)W; ++s)
      if (ids[s] >= 0)
        order[next[ids[s]]++] = s;
    free(next);
  }
  float *send_rows = alloc((size_t)sent * H, sizeof(float));
  float *send_w = alloc((size_t)sent, sizeof(float));
  for (int64_t k = 0; k < sent; ++k) {
    memcpy(send_rows + (size_t)k * H, x + order[k] / (size_t)W * H, H * sizeof(float));
    send_w[k] = topk_w[order[k]];
  }

  /* 3. Exchange the counts: B slots per rank pair, B being the largest shard,
     so that MPI_Alltoall's fixed block fits uneven shards. */
  const int B = (E + R - 1) / R;
  int64_t *send_blocks = alloc((size_t)R * B, sizeof(int64_t));
  int64_t *recv_blocks = alloc((size_t)R * B, sizeof(int64_t));
  for (int d = 0; d < R; ++d)
    for (int64_t e = shard_first(d, E, R); e < shard_first(d + 1, E, R); ++e)
      send_blocks[d * B + (e - shard_first(d, E, R))] = per_expert[e + 1] - per_expert[e];
  MPI_CHECK(MPI_Alltoall(send_blocks, B, MPI_INT64_T, recv_blocks, B, MPI_INT64_T,
                         MPI_COMM_WORLD));

  /* Rows per peer, in rows and in floats (MPI counts in elements). */
  int *rows_to = alloc((size_t)R, sizeof(int)), *rows_from = alloc((size_t)R, sizeof(int));
  int *rows_to_at = alloc((size_t)R, sizeof(int)), *rows_from_at = alloc((size_t)R, sizeof(int));
  int *floats_to = alloc((size_t)R, sizeof(int)), *floats_from = alloc((size_t)R, sizeof(int));
  int *floats_to_at = alloc((size_t)R, sizeof(int)), *floats_from_at = alloc((size_t)R, sizeof(int));
  int64_t received = 0;
  int64_t *local_counts = alloc((size_t)count, sizeof(int64_t));
  int64_t *block_at = alloc((size_t)R * B, sizeof(int64_t));
  for (int p = 0; p < R; ++p) {
    int64_t from = 0;
    for (int i = 0; i < count; ++i) {
      if (recv_blocks[p * B + i] < 0)
        fail("rank %d sent a negative count", p);
      block_at[p * B + i] = received + from;
      from += recv_blocks[p * B + i];
      local_counts[i] += recv_blocks[p * B + i];
    }
    int64_t at = per_expert[shard_first(p, E, R)];
    rows_to[p] = mpi_count(per_expert[shard_first(p + 1, E, R)] - at);
    rows_to_at[p] = mpi_count(at);
    floats_to[p] = mpi_count((int64_t)rows_to[p] * (int64_t)H);
    floats_to_at[p] = mpi_count(at * (int64_t)H);
    rows_from[p] = mpi_count(from);
    rows_from_at[p] = mpi_count(received);
    floats_from[p] = mpi_count(from * (int64_t)H);
    floats_from_at[p] = mpi_count(received * (int64_t)H);
    received += from;
  }

  /* 4. Exchange the rows of x and their routing weights. */
  float *recv_rows = alloc((size_t)received * H, sizeof(float));
  float *recv_w = alloc((size_t)received, sizeof(float));
  MPI_CHECK(MPI_Alltoallv(send_rows, floats_to, floats_to_at, MPI_FLOAT, recv_rows, floats_from,
                          floats_from_at, MPI_FLOAT, MPI_COMM_WORLD));
  MPI_CHECK(MPI_Alltoallv(send_w, rows_to, rows_to_at, MPI_FLOAT, recv_w, rows_from,
                          rows_from_at, MPI_FLOAT, MPI_COMM_WORLD));

  /* 5. Run this rank's experts on every row it received, grouped by local
     expert across the source ranks, then put the results back in the order
     they came in. */
  float *rows = alloc((size_t)received * H, sizeof(float));
  float *row_w = alloc((size_t)received, sizeof(float));
  float *out = alloc((size_t)received * H, sizeof(float));
  regroup(recv_rows, rows, H, recv_blocks, block_at, R, B, count, 1);
  regroup(recv_w, row_w, 1, recv_blocks, block_at, R, B, count, 1);
  moe_check(MOE(_run_experts)(ctx, rows, received, local_counts, row_w, out), "run_experts");
  regroup(out, recv_rows, H, recv_blocks, block_at, R, B, count, 0);

  /* 6. Send the results back: the exchange of step 4 reversed. */
  MPI_CHECK(MPI_Alltoallv(recv_rows, floats_from, floats_from_at, MPI_FLOAT, send_rows,
                          floats_to, floats_to_at, MPI_FLOAT, MPI_COMM_WORLD));

  /* 7. Each result goes to its slot; dropped slots stay zero, and combine
     skips them anyway. */
  float *expert_out = alloc(T * (size_t)W * H, sizeof(float));
  for (int64_t k = 0; k < sent; ++k)
    memcpy(expert_out + order[k] * H, send_rows + (size_t)k * H, H * sizeof(float));
  float *y = alloc(T * H, sizeof(float));
  moe_check(MOE(_combine)(ctx, x, (int64_t)T, ids, expert_out, y), "combine");

  double sum = 0.0, total = 0.0;
  for (size_t i = 0; i < T * H; ++i) {
    if (!isfinite(y[i]))
      fail("y[%zu][%zu] = %g is not finite", i / H, i % H, (double)y[i]);
    sum += y[i];
  }
  printf("rank=%d experts=[%d,%d) tokens=%lld rows_sent=%lld rows_received=%lld\n", rank, first,
         first + count, T_rank, (long long)sent, (long long)received);
  fflush(stdout);
  MPI_CHECK(MPI_Reduce(&sum, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));

  /* 8. For checking against the unsharded layer: rank 0 gathers every x and
     y and writes them beside the weights. */
  int64_t *tokens = alloc((size_t)R, sizeof(int64_t));
  const int64_t my_tokens = (int64_t)T;
  MPI_CHECK(MPI_Gather(&my_tokens, 1, MPI_INT64_T, tokens, 1, MPI_INT64_T, 0, MPI_COMM_WORLD));
  int64_t all_tokens = 0;
  for (int p = 0; p < R; ++p)
    all_tokens += tokens[p];
  if (rank == 0)
    printf("ranks=%d tokens=%lld checksum=%.6e\n", R, (long long)all_tokens, total);
  if (dump) {
    int *n = alloc((size_t)R, sizeof(int)), *at = alloc((size_t)R, sizeof(int));
    for (int p = 0, offset = 0; p < R; ++p) {
      n[p] = mpi_count(tokens[p] * (int64_t)H);
      at[p] = offset;
      offset = mpi_count((int64_t)offset + n[p]);
    }
    float *all_x = alloc(rank == 0 ? (size_t)all_tokens * H : 0, sizeof(float));
    float *all_y = alloc(rank == 0 ? (size_t)all_tokens * H : 0, sizeof(float));
    MPI_CHECK(MPI_Gatherv(x, mpi_count((int64_t)(T * H)), MPI_FLOAT, all_x, n, at, MPI_FLOAT, 0,
                          MPI_COMM_WORLD));
    MPI_CHECK(MPI_Gatherv(y, mpi_count((int64_t)(T * H)), MPI_FLOAT, all_y, n, at, MPI_FLOAT, 0,
                          MPI_COMM_WORLD));
    if (rank == 0) {
      FILE *f = fopen(dump, "wb");
      if (!f)
        fail("cannot open %s for writing", dump);
      const int64_t ranks = R;
      write_all(f, "MOEEPv1", 1, 8, dump);
      write_all(f, &ranks, sizeof ranks, 1, dump);
      write_all(f, tokens, sizeof(int64_t), (size_t)R, dump);
      const float *weights[] = {router, router_bias, selection_bias, gate, up, down,
                                sgate,  sup,         sdown,          segate};
      const size_t sizes[] = {(size_t)E * H, (size_t)E, (size_t)E, (size_t)E * F * H,
                              (size_t)E * F * H, (size_t)E * H * F, FS * H, FS * H, H * FS, H};
      for (size_t i = 0; i < sizeof weights / sizeof *weights; ++i)
        if (weights[i])
          write_all(f, weights[i], sizeof(float), sizes[i], dump);
      write_all(f, all_x, sizeof(float), (size_t)all_tokens * H, dump);
      write_all(f, all_y, sizeof(float), (size_t)all_tokens * H, dump);
      if (fclose(f) != 0)
        fail("cannot write %s", dump);
    }
    free(n);
    free(at);
    free(all_x);
    free(all_y);
  }

  MOE(_destroy)(ctx);
  void *arrays[] = {router, router_bias, selection_bias, gate, up, down, sgate, sup, sdown,
                    segate, x, ids, topk_w, per_expert, order, send_rows, send_w, send_blocks,
                    recv_blocks, rows_to, rows_from, rows_to_at, rows_from_at, floats_to,
                    floats_from, floats_to_at, floats_from_at, local_counts, block_at, recv_rows, recv_w,
                    rows, row_w, out, expert_out, y, tokens};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; ++i)
    free(arrays[i]);
  MPI_CHECK(MPI_Finalize());
  return 0;
}
