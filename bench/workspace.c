/* Workspace of one forward call of a generated f32 library: the peak of
 * heap bytes it holds beyond what was allocated before the call, measured
 * by interposing malloc, and what it leaves allocated (leaked_bytes), plus
 * the process's peak resident set.
 *
 *   workspace LIB NAME TOKENS HIDDEN INTERMEDIATE EXPERTS GATED
 *
 * Built with -rdynamic so that the library's malloc and free resolve here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static _Atomic size_t heapBytes, heapPeak;

static void account(void *p, int sign) {
  if (!p)
    return;
  size_t n = malloc_usable_size(p);
  if (sign < 0) {
    heapBytes -= n;
    return;
  }
  size_t now = heapBytes += n;
  size_t peak = heapPeak;
  while (now > peak && !atomic_compare_exchange_weak(&heapPeak, &peak, now))
    ;
}
void *malloc(size_t n) {
  void *p = __libc_malloc(n);
  account(p, 1);
  return p;
}
void *calloc(size_t count, size_t n) {
  void *p = __libc_calloc(count, n);
  account(p, 1);
  return p;
}
void *realloc(void *old, size_t n) {
  account(old, -1);
  void *p = __libc_realloc(old, n);
  account(p ? p : old, 1);
  return p;
}
void free(void *p) {
  account(p, -1);
  __libc_free(p);
}
void *aligned_alloc(size_t alignment, size_t n) {
  void *p = __libc_memalign(alignment, n);
  account(p, 1);
  return p;
}
int posix_memalign(void **out, size_t alignment, size_t n) {
  *out = __libc_memalign(alignment, n);
  account(*out, 1);
  return *out ? 0 : 12;
}

static long peakResidentKiB(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = atol(line + 6);
  if (f)
    fclose(f);
  return kib;
}

static float *randomArray(size_t n, float scale, uint64_t *state) {
  float *a = malloc(n * sizeof *a);
  for (size_t i = 0; i < n; ++i) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    a[i] = scale * ((float)(*state >> 40) / (float)(1 << 24) - 0.5f);
  }
  return a;
}

static void *symbol(void *lib, const char *name, const char *suffix) {
  char full[256];
  snprintf(full, sizeof full, "%s_%s", name, suffix);
  void *s = dlsym(lib, full);
  if (!s) {
    fprintf(stderr, "workspace: %s not found\n", full);
    exit(2);
  }
  return s;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: workspace LIB NAME TOKENS HIDDEN INTERMEDIATE "
                    "EXPERTS GATED\n");
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "workspace: %s\n", dlerror());
    return 2;
  }
  const char *name = argv[2];
  int64_t T = atoll(argv[3]), H = atoll(argv[4]), F = atoll(argv[5]),
          E = atoll(argv[6]);
  int gated = atoi(argv[7]);
  int (*create)(const void *, void **) = symbol(lib, name, "create");
  int (*forward)(void *, const void *, int64_t, void *) =
      symbol(lib, name, "forward");

  uint64_t state = 1;
  const void *weights[10] = {0};
  weights[0] = randomArray(E * H, 0.1f, &state);
  if (gated)
    weights[3] = randomArray(E * F * H, 0.05f, &state);
  weights[4] = randomArray(E * F * H, 0.05f, &state);
  weights[5] = randomArray(E * H * F, 0.05f, &state);
  float *x = randomArray(T * H, 1.0f, &state);
  float *y = malloc(T * H * sizeof *y);
  void *ctx;
  int code = create(weights, &ctx);
  if (code) {
    fprintf(stderr, "workspace: create failed with %d\n", code);
    return 1;
  }
  // The first call also starts the OpenMP runtime, which keeps its threads'
  // state for the life of the process: measure the second call.
  code = forward(ctx, x, T, y);
  if (code) {
    fprintf(stderr, "workspace: forward failed with %d\n", code);
    return 1;
  }
  size_t before = heapBytes;
  heapPeak = before;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  code = forward(ctx, x, T, y);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (code) {
    fprintf(stderr, "workspace: forward failed with %d\n", code);
    return 1;
  }
  double seconds = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  printf("workspace_peak_mib=%.1f leaked_bytes=%zd peak_rss_mib=%.1f "
         "inputs_mib=%.1f forward_s=%.2f\n",
         (heapPeak - before) / 1048576.0, (ssize_t)(heapBytes - before),
         peakResidentKiB() / 1024.0,
         ((gated ? 3 : 2) * E * F * H + E * H + 2 * T * H) * 4 / 1048576.0,
         seconds);
  return 0;
}
