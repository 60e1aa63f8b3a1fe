/* One MoE block in ggml, as llama.cpp builds it (build_moe_ffn with
 * ggml_mul_mat_id): softmax routing over a router in f32, top-k, weights
 * renormalized, gated SiLU experts in the given weight type, the k expert
 * outputs weighted and summed. Times ggml_graph_compute_with_ctx on the CPU
 * and prints the median milliseconds per call and the bytes of the expert
 * weights, for bench/run.
 *
 *   ggml_moe H F E K T TYPE THREADS REPS
 *
 * TYPE: f32, bf16, q8_0, q4_0 or q4_K. */

#include "ggml-cpu.h"
#include "ggml.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static enum ggml_type parse_type(const char *name) {
  static const struct {
    const char *name;
    enum ggml_type type;
  } types[] = {{"f32", GGML_TYPE_F32},
               {"bf16", GGML_TYPE_BF16},
               {"q8_0", GGML_TYPE_Q8_0},
               {"q4_0", GGML_TYPE_Q4_0},
               {"q4_K", GGML_TYPE_Q4_K}};
  for (size_t i = 0; i < sizeof types / sizeof *types; ++i)
    if (!strcmp(name, types[i].name))
      return types[i].type;
  fprintf(stderr, "ggml_moe: unknown type %s\n", name);
  exit(2);
}

/* Uniform values of standard deviation `std`, from a fixed LCG. */
static void fill(float *out, int64_t n, float std, unsigned *state) {
  for (int64_t i = 0; i < n; ++i) {
    *state = *state * 1664525u + 1013904223u;
    out[i] = ((*state >> 8) / 16777216.0f - 0.5f) * std * 3.4641016f;
  }
}

/* An [E][rows][cols] weight in `type`, rows of `cols` quantized one
 * expert at a time. */
static struct ggml_tensor *weight(struct ggml_context *ctx, enum ggml_type type,
                                  int64_t cols, int64_t rows, int64_t E,
                                  unsigned *state) {
  struct ggml_tensor *t = ggml_new_tensor_3d(ctx, type, cols, rows, E);
  float *values = malloc(sizeof(float) * cols * rows);
  for (int64_t e = 0; e < E; ++e) {
    fill(values, cols * rows, 1.0f / sqrtf((float)cols), state);
    char *dst = (char *)t->data + e * t->nb[2];
    if (type == GGML_TYPE_F32)
      memcpy(dst, values, sizeof(float) * cols * rows);
    else if (type == GGML_TYPE_BF16)
      ggml_fp32_to_bf16_row(values, (ggml_bf16_t *)dst, cols * rows);
    else
      ggml_quantize_chunk(type, values, dst, 0, rows, cols, NULL);
  }
  free(values);
  return t;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: ggml_moe H F E K T TYPE THREADS REPS\n");
    return 2;
  }
  int64_t H = atoll(argv[1]), F = atoll(argv[2]), E = atoll(argv[3]),
          K = atoll(argv[4]), T = atoll(argv[5]);
  enum ggml_type type = parse_type(argv[6]);
  int threads = atoi(argv[7]), reps = atoi(argv[8]);

  size_t weights =
      (2 * ggml_row_size(type, H) * F + ggml_row_size(type, F) * H) * E +
      sizeof(float) * H * E;
  size_t activations =
      sizeof(float) * (size_t)T * (4 * H + 4 * K * F + 2 * K * H + 4 * E) +
      ((size_t)256 << 20);
  struct ggml_init_params params = {weights + activations + ((size_t)64 << 20),
                                    NULL, false};
  struct ggml_context *ctx = ggml_init(params);
  if (!ctx) {
    fprintf(stderr, "ggml_moe: cannot allocate the context\n");
    return 1;
  }
  unsigned state = 1;
  struct ggml_tensor *router = weight(ctx, GGML_TYPE_F32, H, E, 1, &state);
  router = ggml_reshape_2d(ctx, router, H, E);
  struct ggml_tensor *gate = weight(ctx, type, H, F, E, &state);
  struct ggml_tensor *up = weight(ctx, type, H, F, E, &state);
  struct ggml_tensor *down = weight(ctx, type, F, H, E, &state);
  struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, H, T);
  fill((float *)x->data, H * T, 1.0f, &state);

  /* build_moe_ffn: softmax gating, top-k, normalized weights. */
  struct ggml_tensor *logits = ggml_mul_mat(ctx, router, x); /* [E, T] */
  struct ggml_tensor *probs = ggml_soft_max(ctx, logits);
  struct ggml_tensor *selected = ggml_argsort_top_k(ctx, probs, K); /* [K, T] */
  struct ggml_tensor *w =
      ggml_get_rows(ctx, ggml_reshape_3d(ctx, probs, 1, E, T), selected);
  w = ggml_reshape_2d(ctx, w, K, T);
  w = ggml_div(ctx, w, ggml_sum_rows(ctx, w));
  w = ggml_reshape_3d(ctx, w, 1, K, T);
  struct ggml_tensor *cur = ggml_reshape_3d(ctx, x, H, 1, T);
  struct ggml_tensor *u =
      ggml_mul_mat_id(ctx, up, cur, selected); /* [F, K, T] */
  struct ggml_tensor *g =
      ggml_mul_mat_id(ctx, gate, cur, selected); /* [F, K, T] */
  struct ggml_tensor *h = ggml_swiglu_split(ctx, g, u);
  struct ggml_tensor *experts =
      ggml_mul_mat_id(ctx, down, h, selected); /* [H, K, T] */
  experts = ggml_mul(ctx, experts, w);
  struct ggml_tensor *y = ggml_view_2d(ctx, experts, H, T, experts->nb[2], 0);
  for (int64_t i = 1; i < K; ++i)
    y = ggml_add(
        ctx, y,
        ggml_view_2d(ctx, experts, H, T, experts->nb[2], i * experts->nb[1]));
  if (K == 1)
    y = ggml_cont(ctx, y);

  struct ggml_cgraph *graph = ggml_new_graph(ctx);
  ggml_build_forward_expand(graph, y);

  double *times = malloc(sizeof(double) * (reps + 1));
  for (int r = 0; r <= reps; ++r) {
    double start = now();
    if (ggml_graph_compute_with_ctx(ctx, graph, threads) !=
        GGML_STATUS_SUCCESS) {
      fprintf(stderr, "ggml_moe: graph compute failed\n");
      return 1;
    }
    times[r] = now() - start;
  }
  /* The first call warms up and is left out. */
  qsort(times + 1, reps, sizeof(double), compare);
  printf("{\"ms\": %.6f, \"expert_bytes\": %zu}\n", times[1 + reps / 2] * 1e3,
         (size_t)ggml_nbytes(gate) / E * 3);
  free(times);
  ggml_free(ctx);
  return 0;
}
