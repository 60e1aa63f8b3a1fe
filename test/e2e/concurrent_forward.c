/* Many threads calling forward on one context, for ThreadSanitizer
 * (test_sanitizers.py). Each thread has its own input and output and
 * repeats its call; every result must equal, bit for bit, the same call
 * made serially first. With --shared-output every thread writes one y,
 * which SPEC §4 does not allow: the race ThreadSanitizer must then report
 * shows that the library's own accesses are instrumented. */
#include "tsan_layer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { H = TSAN_LAYER_HIDDEN_SIZE, F = TSAN_LAYER_INTERMEDIATE_SIZE,
       E = TSAN_LAYER_NUM_EXPERTS, FS = TSAN_LAYER_SHARED_INTERMEDIATE_SIZE,
       T = 37, THREADS = 8, CALLS = 3 };

static float *random_array(size_t n, unsigned seed) {
  float *a = malloc(n * sizeof *a);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1103515245u + 12345u;
    a[i] = ((float)(seed >> 8) / (float)(1u << 24) - 0.5f) * 0.5f;
  }
  return a;
}

struct job {
  tsan_layer_context *ctx;
  const float *x;
  float *y;
  int status;
};

static void *run(void *arg) {
  struct job *job = arg;
  for (int call = 0; call < CALLS && job->status == 0; ++call)
    job->status = tsan_layer_forward(job->ctx, job->x, T, job->y);
  return NULL;
}

int main(int argc, char **argv) {
  int shared_output = argc > 1 && strcmp(argv[1], "--shared-output") == 0;
  tsan_layer_weights w = {0};
  w.router = random_array((size_t)E * H, 1);
  w.gate_proj = random_array((size_t)E * F * H, 2);
  w.up_proj = random_array((size_t)E * F * H, 3);
  w.down_proj = random_array((size_t)E * H * F, 4);
  w.shared_gate_proj = random_array((size_t)FS * H, 5);
  w.shared_up_proj = random_array((size_t)FS * H, 6);
  w.shared_down_proj = random_array((size_t)H * FS, 7);
  w.shared_expert_gate = random_array(H, 8);
  tsan_layer_context *ctx;
  if (tsan_layer_create(&w, &ctx) != 0)
    return fprintf(stderr, "create failed\n"), 2;

  struct job jobs[THREADS];
  float *expected[THREADS];
  float *shared_y = malloc((size_t)T * H * sizeof(float));
  for (int i = 0; i < THREADS; ++i) {
    expected[i] = malloc((size_t)T * H * sizeof(float));
    jobs[i].ctx = ctx;
    jobs[i].x = random_array((size_t)T * H, 100 + i);
    jobs[i].y = shared_output ? shared_y : malloc((size_t)T * H * sizeof(float));
    jobs[i].status = 0;
    if (tsan_layer_forward(ctx, jobs[i].x, T, expected[i]) != 0)
      return fprintf(stderr, "serial forward failed\n"), 2;
  }
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; ++i)
    pthread_create(&threads[i], NULL, run, &jobs[i]);
  for (int i = 0; i < THREADS; ++i)
    pthread_join(threads[i], NULL);

  int mismatches = 0;
  for (int i = 0; i < THREADS; ++i) {
    if (jobs[i].status != 0)
      return fprintf(stderr, "thread %d: forward returned %d\n", i,
                     jobs[i].status), 2;
    if (!shared_output &&
        memcmp(jobs[i].y, expected[i], (size_t)T * H * sizeof(float)) != 0) {
      fprintf(stderr, "thread %d: result differs from the serial call\n", i);
      ++mismatches;
    }
  }
  tsan_layer_destroy(ctx);
  printf("%d threads x %d calls, %d mismatches\n", THREADS, CALLS, mismatches);
  return mismatches != 0;
}
