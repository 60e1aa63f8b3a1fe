//===- fake_cuda_driver.c - A CUDA driver that runs nothing, for tests ----===//
//
// Part of the moe-mlir project.
//
// Built by test_cuda_runtime.py as libcuda.so.1 and put first on the loader
// path, it stands in for the CUDA driver on a machine without a GPU: it
// implements the driver calls runtime/CUDARuntime.c makes, runs no kernel,
// and logs every call with its arguments, so that a test can check what a
// generated library asks of the driver: which kernels it launches, on
// which stream, with which grid; that its workspace is allocated and freed
// in stream order; that contexts are pushed and popped in pairs. Failures
// are injected by environment variable:
//   FAKE_CUDA_FAIL=<call>[:<n>]  the n-th call (default 1st) of <call> fails
//                                (cuMemAllocFromPoolAsync and cuMemAlloc_v2
//                                with out-of-memory, the rest with 999)
//   FAKE_CUDA_NO_POOLS=1         the device has no memory pools
//
//===----------------------------------------------------------------------===//

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *logText;
static size_t logLength, logCapacity;

/// Appends one line to the log: the calling thread, then the call.
static void record(const char *format, ...) {
  char line[512];
  int length = snprintf(line, sizeof line, "%#lx ", (unsigned long)pthread_self());
  va_list args;
  va_start(args, format);
  length += vsnprintf(line + length, sizeof line - length, format, args);
  va_end(args);
  if (length < 0)
    return;
  if ((size_t)length >= sizeof line)
    length = sizeof line - 1;
  pthread_mutex_lock(&lock);
  if (logLength + length + 2 > logCapacity) {
    logCapacity = 2 * (logCapacity + length + 2);
    logText = realloc(logText, logCapacity);
  }
  memcpy(logText + logLength, line, length);
  logLength += length;
  logText[logLength++] = '\n';
  logText[logLength] = 0;
  pthread_mutex_unlock(&lock);
}

/// Marks a point of the test in the log (`<thread> mark <label>`).
void fake_mark(const char *label) { record("mark %s", label); }

/// The log so far, one call per line: `<thread> <call> <arguments...>`.
const char *fake_log(void) { return logText ? logText : ""; }

/// Whether this call of `call` is the one FAKE_CUDA_FAIL names.
static int fails(const char *call) {
  static int calls[64];
  static const char *names[64];
  const char *spec = getenv("FAKE_CUDA_FAIL");
  if (!spec)
    return 0;
  size_t nameLength = strcspn(spec, ":");
  if (strlen(call) != nameLength || strncmp(spec, call, nameLength) != 0)
    return 0;
  int which = spec[nameLength] == ':' ? atoi(spec + nameLength + 1) : 1;
  pthread_mutex_lock(&lock);
  int slot = 0;
  while (slot < 63 && names[slot] && strcmp(names[slot], call) != 0)
    ++slot;
  names[slot] = call;
  int count = ++calls[slot];
  pthread_mutex_unlock(&lock);
  return count == which;
}

enum { FAILURE = 999, OUT_OF_MEMORY = 2 };

static _Thread_local void *contextStack[16];
static _Thread_local int contextDepth;
static char primaryContext;

CUresult cuInit(unsigned flags) {
  record("init %u", flags);
  return fails("cuInit") ? FAILURE : 0;
}
CUresult cuDeviceGetCount(int *count) {
  *count = 1;
  return 0;
}
CUresult cuDeviceGet(int *device, int ordinal) {
  *device = ordinal;
  return 0;
}
CUresult cuDeviceGetAttribute(int *value, int attribute, int device) {
  (void)device;
  const char *noPools = getenv("FAKE_CUDA_NO_POOLS");
  *value = attribute == 115 ? !(noPools && *noPools == '1') : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(void **context, int device) {
  record("retain %d", device);
  *context = &primaryContext;
  return 0;
}
CUresult cuCtxGetCurrent(void **context) {
  *context = contextDepth ? contextStack[contextDepth - 1] : NULL;
  return 0;
}
CUresult cuCtxGetDevice(int *device) {
  *device = 0;
  return 0;
}
CUresult cuCtxPushCurrent_v2(void *context) {
  record("push %p", context);
  if (fails("cuCtxPushCurrent_v2"))
    return FAILURE;
  contextStack[contextDepth++] = context;
  return 0;
}
CUresult cuCtxPopCurrent_v2(void **context) {
  record("pop");
  if (contextDepth == 0)
    return FAILURE;
  *context = contextStack[--contextDepth];
  return 0;
}

CUresult cuModuleLoadData(void **module, const void *image) {
  uint32_t magic;
  memcpy(&magic, image, sizeof magic);
  record("load %s", magic == 0xBA55ED50u ? "fatbin" : "not-a-fatbin");
  if (fails("cuModuleLoadData"))
    return FAILURE;
  *module = (void *)image;
  return 0;
}
CUresult cuModuleUnload(void *module) {
  (void)module;
  return 0;
}
CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
  (void)module;
  if (fails("cuModuleGetFunction"))
    return FAILURE;
  *function = strdup(name);
  return 0;
}
CUresult cuLaunchKernel(void *function, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned smem,
                        void *stream, void **params, void **extra) {
  (void)extra;
  record("launch %s %u %u %u %u %u %u %u %p %s", (const char *)function, gx,
         gy, gz, bx, by, bz, smem, stream, params ? "params" : "no-params");
  return fails("cuLaunchKernel") ? FAILURE : 0;
}
CUresult cuStreamSynchronize(void *stream) {
  record("sync %p", stream);
  return fails("cuStreamSynchronize") ? FAILURE : 0;
}

CUresult cuMemAlloc_v2(unsigned long long *pointer, size_t bytes) {
  if (fails("cuMemAlloc_v2"))
    return OUT_OF_MEMORY;
  *pointer = (uintptr_t)malloc(bytes);
  record("alloc %#llx %zu sync", *pointer, bytes);
  return 0;
}
CUresult cuMemFree_v2(unsigned long long pointer) {
  record("free %#llx sync", pointer);
  free((void *)(uintptr_t)pointer);
  return 0;
}
CUresult cuMemPoolCreate(void **pool, const void *props) {
  (void)props;
  static char fakePool;
  *pool = &fakePool;
  return 0;
}
CUresult cuMemPoolSetAttribute(void *pool, int attribute, void *value) {
  (void)pool;
  record("pool-attribute %d %llu", attribute,
         (unsigned long long)*(uint64_t *)value);
  return 0;
}
CUresult cuMemAllocFromPoolAsync(unsigned long long *pointer, size_t bytes,
                                 void *pool, void *stream) {
  (void)pool;
  if (fails("cuMemAllocFromPoolAsync"))
    return OUT_OF_MEMORY;
  *pointer = (uintptr_t)malloc(bytes);
  record("alloc %#llx %zu %p", *pointer, bytes, stream);
  return 0;
}
CUresult cuMemFreeAsync(unsigned long long pointer, void *stream) {
  record("free %#llx %p", pointer, stream);
  free((void *)(uintptr_t)pointer);
  return 0;
}
CUresult cuGetErrorString(CUresult result, const char **message) {
  *message = result == OUT_OF_MEMORY ? "fake out of memory" : "fake failure";
  return 0;
}
