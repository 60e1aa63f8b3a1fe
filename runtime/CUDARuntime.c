//===- CUDARuntime.c - The CUDA driver calls of generated libraries -------===//
//
// Part of the moe-mlir project.
//
// Every library moe-compile builds for "target": "cuda" links this file. It
// implements the `mgpu*` entry points that MLIR's gpu-to-llvm host code
// calls (module load, kernel lookup and launch, stream-ordered allocation)
// over the CUDA driver API, which it loads with dlopen on first use: the
// library itself loads on a machine without a GPU or a driver, and reports
// that as an error code when a context is created.
//
// The runtime never aborts. A driver call that fails records the call's
// first failure in a per-thread status and turns the rest of the call's
// launches into no-ops; the C wrapper reads the status at the end of the
// call (moeCudaEndCall) and returns it as the library's error code.
//
// No CUDA header is needed to build it: the few driver types and entry
// points it uses are declared below, as cuda.h declares them.
//
//===----------------------------------------------------------------------===//

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//===----------------------------------------------------------------------===//
// The driver API, as much as is used
//===----------------------------------------------------------------------===//

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUmemPoolHandle_st *CUmemoryPool;

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115,
  CU_MEM_ALLOCATION_TYPE_PINNED = 1,
  CU_MEM_LOCATION_TYPE_DEVICE = 1,
  CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4,
};

/// CUmemPoolProps (cuda.h, CUDA 12.2 and later; the same size before).
typedef struct {
  int allocType;
  int handleTypes;
  struct {
    int type;
    int id;
  } location;
  void *win32SecurityAttributes;
  size_t maxSize;
  unsigned short usage;
  unsigned char reserved[54];
} MemPoolProps;

static struct {
  CUresult (*init)(unsigned);
  CUresult (*deviceGetCount)(int *);
  CUresult (*deviceGet)(CUdevice *, int);
  CUresult (*deviceGetAttribute)(int *, int, CUdevice);
  CUresult (*primaryContextRetain)(CUcontext *, CUdevice);
  CUresult (*contextGetCurrent)(CUcontext *);
  CUresult (*contextGetDevice)(CUdevice *);
  CUresult (*contextPush)(CUcontext);
  CUresult (*contextPop)(CUcontext *);
  CUresult (*moduleLoadData)(CUmodule *, const void *);
  CUresult (*moduleUnload)(CUmodule);
  CUresult (*moduleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*launchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                           unsigned, unsigned, unsigned, CUstream, void **,
                           void **);
  CUresult (*streamSynchronize)(CUstream);
  CUresult (*memAlloc)(CUdeviceptr *, size_t);
  CUresult (*memFree)(CUdeviceptr);
  CUresult (*getErrorString)(CUresult, const char **);
  // Stream-ordered allocation (CUDA 11.2); optional.
  CUresult (*memPoolCreate)(CUmemoryPool *, const MemPoolProps *);
  CUresult (*memPoolSetAttribute)(CUmemoryPool, int, void *);
  CUresult (*memAllocFromPoolAsync)(CUdeviceptr *, size_t, CUmemoryPool,
                                    CUstream);
  CUresult (*memFreeAsync)(CUdeviceptr, CUstream);
} cu;

/// Binds `cu` to libcuda.so.1's entry points; 0 when one is missing.
static int loadDriver(void) {
  // Only the driver's soname: the toolkit's stub (libcuda.so) must not
  // stand in for a driver.
  void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!driver)
    return 0;
  struct {
    void **slot;
    const char *name;
    int required;
  } symbols[] = {
      {(void **)&cu.init, "cuInit", 1},
      {(void **)&cu.deviceGetCount, "cuDeviceGetCount", 1},
      {(void **)&cu.deviceGet, "cuDeviceGet", 1},
      {(void **)&cu.deviceGetAttribute, "cuDeviceGetAttribute", 1},
      {(void **)&cu.primaryContextRetain, "cuDevicePrimaryCtxRetain", 1},
      {(void **)&cu.contextGetCurrent, "cuCtxGetCurrent", 1},
      {(void **)&cu.contextGetDevice, "cuCtxGetDevice", 1},
      {(void **)&cu.contextPush, "cuCtxPushCurrent_v2", 1},
      {(void **)&cu.contextPop, "cuCtxPopCurrent_v2", 1},
      {(void **)&cu.moduleLoadData, "cuModuleLoadData", 1},
      {(void **)&cu.moduleUnload, "cuModuleUnload", 1},
      {(void **)&cu.moduleGetFunction, "cuModuleGetFunction", 1},
      {(void **)&cu.launchKernel, "cuLaunchKernel", 1},
      {(void **)&cu.streamSynchronize, "cuStreamSynchronize", 1},
      {(void **)&cu.memAlloc, "cuMemAlloc_v2", 1},
      {(void **)&cu.memFree, "cuMemFree_v2", 1},
      {(void **)&cu.getErrorString, "cuGetErrorString", 1},
      {(void **)&cu.memPoolCreate, "cuMemPoolCreate", 0},
      {(void **)&cu.memPoolSetAttribute, "cuMemPoolSetAttribute", 0},
      {(void **)&cu.memAllocFromPoolAsync, "cuMemAllocFromPoolAsync", 0},
      {(void **)&cu.memFreeAsync, "cuMemFreeAsync", 0},
  };
  for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; ++i) {
    *symbols[i].slot = dlsym(driver, symbols[i].name);
    if (!*symbols[i].slot && symbols[i].required)
      return 0;
  }
  return 1;
}

//===----------------------------------------------------------------------===//
// Status
//===----------------------------------------------------------------------===//

/// What a call ends with; the C wrapper maps these to its error codes.
enum {
  STATUS_OK = 0,
  STATUS_NO_DEVICE = 1,
  STATUS_DRIVER_FAILED = 2,
  STATUS_OUT_OF_MEMORY = 3,
};

/// The first failure of the call in progress on this thread.
static _Thread_local int callStatus;

/// MOE_CUDA_VERBOSE=1 prints each failing driver call to stderr.
static void report(const char *what, CUresult result) {
  const char *verbose = getenv("MOE_CUDA_VERBOSE");
  if (!verbose || !*verbose || *verbose == '0')
    return;
  const char *message = NULL;
  if (cu.getErrorString)
    cu.getErrorString(result, &message);
  fprintf(stderr, "moe-mlir CUDA runtime: %s failed: %d (%s)\n", what,
          (int)result, message ? message : "no description");
}

/// Records a failed driver call; returns whether `result` is a success.
static int check(CUresult result, const char *what) {
  if (result == CUDA_SUCCESS)
    return 1;
  report(what, result);
  if (!callStatus)
    callStatus = result == CUDA_ERROR_OUT_OF_MEMORY ? STATUS_OUT_OF_MEMORY
                                                    : STATUS_DRIVER_FAILED;
  return 0;
}

//===----------------------------------------------------------------------===//
// Initialization: driver, context, modules, memory pool
//===----------------------------------------------------------------------===//

/// A kernel image the host code registered (mgpuModuleLoad).
typedef struct {
  const void *image;
  CUmodule module;
} Module;

enum { MAX_MODULES = 8 };

static struct {
  pthread_mutex_t lock;
  int initialized;
  int status; // of initialization
  CUcontext context;
  CUmemoryPool pool; // NULL: synchronous cuMemAlloc
  Module modules[MAX_MODULES];
  int numModules;
} runtime = {PTHREAD_MUTEX_INITIALIZER, 0, STATUS_OK, NULL, NULL, {{0}}, 0};

/// Loads a registered image into the context; the lock is held.
static void loadModule(Module *module) {
  if (module->module || !runtime.context)
    return;
  if (!check(cu.contextPush(runtime.context), "cuCtxPushCurrent"))
    return;
  check(cu.moduleLoadData(&module->module, module->image),
        "cuModuleLoadData");
  CUcontext popped;
  cu.contextPop(&popped);
}

/// A memory pool of the context's device that keeps what it allocated
/// between calls (release threshold: never), so that each call's
/// workspace comes back without the driver mapping memory again.
static void createPool(CUdevice device) {
  int supported = 0;
  if (!cu.memPoolCreate || !cu.memPoolSetAttribute ||
      !cu.memAllocFromPoolAsync || !cu.memFreeAsync ||
      cu.deviceGetAttribute(&supported,
                            CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
                            device) != CUDA_SUCCESS ||
      !supported)
    return;
  MemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = device;
  CUmemoryPool pool;
  if (cu.memPoolCreate(&pool, &props) != CUDA_SUCCESS)
    return;
  uint64_t keepAll = UINT64_MAX;
  cu.memPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keepAll);
  runtime.pool = pool;
}

/// The whole initialization; the lock is held.
static int initialize(void) {
  if (!loadDriver() || cu.init(0) != CUDA_SUCCESS)
    return STATUS_NO_DEVICE;
  int count = 0;
  if (cu.deviceGetCount(&count) != CUDA_SUCCESS || count == 0)
    return STATUS_NO_DEVICE;
  // The caller's context if it has one (a framework's), else device 0's
  // primary context, which is what the CUDA runtime API would use.
  CUcontext context = NULL;
  CUdevice device = 0;
  callStatus = STATUS_OK;
  if (cu.contextGetCurrent(&context) == CUDA_SUCCESS && context) {
    if (!check(cu.contextGetDevice(&device), "cuCtxGetDevice"))
      return callStatus;
  } else if (!check(cu.deviceGet(&device, 0), "cuDeviceGet") ||
             !check(cu.primaryContextRetain(&context, device),
                    "cuDevicePrimaryCtxRetain")) {
    return callStatus;
  }
  runtime.context = context;
  for (int i = 0; i < runtime.numModules; ++i)
    loadModule(&runtime.modules[i]);
  if (callStatus)
    return callStatus;
  if (check(cu.contextPush(context), "cuCtxPushCurrent")) {
    createPool(device);
    CUcontext popped;
    cu.contextPop(&popped);
  }
  return callStatus;
}

/// Finds the driver, a device and its context, and loads the kernels:
/// 0, STATUS_NO_DEVICE or STATUS_DRIVER_FAILED. Runs once; later calls
/// return the first one's result.
int moeCudaInit(void) {
  pthread_mutex_lock(&runtime.lock);
  if (!runtime.initialized) {
    runtime.status = initialize();
    runtime.initialized = 1;
  }
  int status = runtime.status;
  pthread_mutex_unlock(&runtime.lock);
  callStatus = STATUS_OK;
  return status;
}

/// Whether the call in progress on this thread pushed the context.
static _Thread_local int pushedContext;

/// Starts a call on this thread: the library's context becomes current.
void moeCudaBeginCall(void) {
  callStatus = STATUS_OK;
  pushedContext = 0;
  if (runtime.status != STATUS_OK || !runtime.context) {
    callStatus = runtime.status ? runtime.status : STATUS_NO_DEVICE;
    return;
  }
  pushedContext = check(cu.contextPush(runtime.context), "cuCtxPushCurrent");
}

/// Ends the call: waits for `stream` when `wait` is set, restores the
/// thread's context, and returns the call's status.
int moeCudaEndCall(void *stream, int wait) {
  if (!pushedContext)
    return callStatus;
  if (wait && !callStatus)
    check(cu.streamSynchronize((CUstream)stream), "cuStreamSynchronize");
  CUcontext popped;
  cu.contextPop(&popped);
  pushedContext = 0;
  return callStatus;
}

//===----------------------------------------------------------------------===//
// The entry points of MLIR's host code (gpu-to-llvm, gpu.binary)
//===----------------------------------------------------------------------===//

/// Called when the library is loaded (a global constructor): registers the
/// kernels' fat binary. It is loaded into the context at initialization.
void *mgpuModuleLoad(void *data, size_t size) {
  (void)size; // a fat binary knows its size
  pthread_mutex_lock(&runtime.lock);
  Module *module = NULL;
  if (runtime.numModules < MAX_MODULES) {
    module = &runtime.modules[runtime.numModules++];
    module->image = data;
    module->module = NULL;
    if (runtime.initialized)
      loadModule(module);
  }
  pthread_mutex_unlock(&runtime.lock);
  return module;
}

/// Called when the library is unloaded (a global destructor).
void mgpuModuleUnload(void *handle) {
  Module *module = handle;
  pthread_mutex_lock(&runtime.lock);
  if (module && module->module && runtime.context &&
      cu.contextPush(runtime.context) == CUDA_SUCCESS) {
    cu.moduleUnload(module->module);
    CUcontext popped;
    cu.contextPop(&popped);
  }
  if (module)
    module->module = NULL;
  pthread_mutex_unlock(&runtime.lock);
}

void *mgpuModuleGetFunction(void *handle, const char *name) {
  Module *module = handle;
  if (callStatus)
    return NULL;
  if (!module || !module->module) {
    callStatus = STATUS_DRIVER_FAILED;
    return NULL;
  }
  CUfunction function = NULL;
  check(cu.moduleGetFunction(&function, module->module, name),
        "cuModuleGetFunction");
  return function;
}

void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                      intptr_t gridZ, intptr_t blockX, intptr_t blockY,
                      intptr_t blockZ, int32_t sharedBytes, void *stream,
                      void **params, void **extra, size_t paramsCount) {
  (void)paramsCount;
  if (callStatus || !function)
    return;
  check(cu.launchKernel((CUfunction)function, (unsigned)gridX,
                        (unsigned)gridY, (unsigned)gridZ, (unsigned)blockX,
                        (unsigned)blockY, (unsigned)blockZ,
                        (unsigned)sharedBytes, (CUstream)stream, params,
                        extra),
        "cuLaunchKernel");
}

/// Device memory ordered on `stream`: from the runtime's pool when the
/// device has pools, else cuMemAlloc. NULL after a failure (and for 0
/// bytes, which nothing reads).
void *mgpuMemAlloc(uint64_t bytes, void *stream, int8_t hostShared) {
  (void)hostShared;
  CUdeviceptr pointer = 0;
  if (callStatus || bytes == 0)
    return NULL;
  if (runtime.pool)
    check(cu.memAllocFromPoolAsync(&pointer, bytes, runtime.pool,
                                   (CUstream)stream),
          "cuMemAllocFromPoolAsync");
  else
    check(cu.memAlloc(&pointer, bytes), "cuMemAlloc");
  return (void *)(uintptr_t)pointer;
}

/// Frees after the work queued on `stream` (cuMemFree waits for the device).
void mgpuMemFree(void *pointer, void *stream) {
  if (!pointer)
    return;
  CUdeviceptr device = (CUdeviceptr)(uintptr_t)pointer;
  if (runtime.pool)
    check(cu.memFreeAsync(device, (CUstream)stream), "cuMemFreeAsync");
  else
    check(cu.memFree(device), "cuMemFree");
}
