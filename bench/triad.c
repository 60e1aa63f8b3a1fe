/* STREAM-style triad, a[i] = b[i] + s * c[i], over three 256 MiB arrays of
 * doubles, split across OpenMP threads (first touch by the same threads).
 * Counts 3 arrays of traffic per pass (2 read, 1 written; write-allocate
 * traffic is not counted, as in STREAM).
 *
 *   triad [THREADS [REPETITIONS]]
 *
 * Prints one line: "threads N reps R best_GBps X median_GBps Y". */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define ARRAY_BYTES (256ul << 20)

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
  int reps = argc > 2 ? atoi(argv[2]) : 10;
  if (threads < 1 || reps < 1) {
    fprintf(stderr, "usage: triad [THREADS [REPETITIONS]]\n");
    return 2;
  }
  omp_set_num_threads(threads);
  long n = (long)(ARRAY_BYTES / sizeof(double));
  double *a = aligned_alloc(64, ARRAY_BYTES);
  double *b = aligned_alloc(64, ARRAY_BYTES);
  double *c = aligned_alloc(64, ARRAY_BYTES);
  if (!a || !b || !c) {
    fprintf(stderr, "triad: out of memory\n");
    return 1;
  }
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) {
    a[i] = 0.0;
    b[i] = 1.0;
    c[i] = 2.0;
  }
  const double s = 3.0;
  double *rates = malloc(sizeof(double) * reps);
  for (int r = 0; r < reps; r++) {
    double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
      a[i] = b[i] + s * c[i];
    double t = omp_get_wtime() - t0;
    rates[r] = 3.0 * ARRAY_BYTES / t / 1e9;
  }
  double check = 0;
  for (long i = 0; i < n; i += 4096)
    check += a[i];
  if (check != (double)((n + 4095) / 4096) * 7.0) {
    fprintf(stderr, "triad: wrong result\n");
    return 1;
  }
  qsort(rates, reps, sizeof(double), compare);
  printf("threads %d reps %d best_GBps %.2f median_GBps %.2f\n", threads, reps,
         rates[reps - 1],
         reps % 2 ? rates[reps / 2] : 0.5 * (rates[reps / 2 - 1] + rates[reps / 2]));
  free(rates);
  free(a);
  free(b);
  free(c);
  return 0;
}
