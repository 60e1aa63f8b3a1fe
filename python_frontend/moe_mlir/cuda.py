"""Device memory for libraries built for "target": "cuda", through the CUDA
driver API (libcuda.so.1) with ctypes: no CUDA Python package needed.

`driver()` returns the process's Driver, or raises CudaUnavailable with the
reason (no driver library, cuInit failing, no device). Its context is device
0's primary context, the one the generated libraries and the CUDA runtime
API use.
"""

import ctypes

import numpy as np

CUDA_SUCCESS = 0
CUDA_ERROR_NOT_READY = 600


class CudaUnavailable(RuntimeError):
    """No usable CUDA driver or device; the message says why."""


class CudaError(RuntimeError):
    def __init__(self, call, code, message):
        super().__init__(f"{call} failed: {code} ({message})")
        self.call, self.code = call, code


class Driver:
    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise CudaUnavailable(f"no CUDA driver (libcuda.so.1): {e}") from None
        self.lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        code = self.lib.cuInit(0)
        if code != CUDA_SUCCESS:
            raise CudaUnavailable(f"cuInit failed: {code} ({self.error_string(code)})")
        count = ctypes.c_int()
        self.check("cuDeviceGetCount", self.lib.cuDeviceGetCount(ctypes.byref(count)))
        if count.value == 0:
            raise CudaUnavailable("the CUDA driver sees no device")
        device = ctypes.c_int()
        self.check("cuDeviceGet", self.lib.cuDeviceGet(ctypes.byref(device), 0))
        self.device = device.value
        self.context = ctypes.c_void_p()
        self.check("cuDevicePrimaryCtxRetain",
                   self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), device))
        self.make_current()
        vp, size = ctypes.c_void_p, ctypes.c_size_t
        self.lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), size]
        self.lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        self.lib.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, vp, size]
        self.lib.cuMemcpyDtoH_v2.argtypes = [vp, ctypes.c_uint64, size]
        self.lib.cuStreamCreate.argtypes = [ctypes.POINTER(vp), ctypes.c_uint]
        for name in ("cuStreamSynchronize", "cuStreamQuery", "cuStreamDestroy_v2"):
            getattr(self.lib, name).argtypes = [vp]

    def error_string(self, code):
        text = ctypes.c_char_p()
        self.lib.cuGetErrorString(code, ctypes.byref(text))
        return text.value.decode() if text.value else "unknown"

    def check(self, call, code):
        if code != CUDA_SUCCESS:
            raise CudaError(call, code, self.error_string(code))

    def make_current(self):
        """The primary context becomes the calling thread's."""
        self.check("cuCtxSetCurrent", self.lib.cuCtxSetCurrent(self.context))

    def name(self):
        buffer = ctypes.create_string_buffer(256)
        self.check("cuDeviceGetName", self.lib.cuDeviceGetName(buffer, 256, self.device))
        return buffer.value.decode()

    # -- memory ----------------------------------------------------------------

    def upload(self, array):
        """A DeviceArray holding a copy of the C-contiguous `array`."""
        array = np.ascontiguousarray(array)
        device = self.empty(array.shape, array.dtype)  # makes the context current
        if array.nbytes:
            self.check("cuMemcpyHtoD", self.lib.cuMemcpyHtoD_v2(
                device.pointer, array.ctypes.data, array.nbytes))
        return device

    def empty(self, shape, dtype):
        return DeviceArray(self, shape, dtype)

    # -- streams ---------------------------------------------------------------

    def stream(self, non_blocking=True):
        handle = ctypes.c_void_p()
        self.check("cuStreamCreate", self.lib.cuStreamCreate(
            ctypes.byref(handle), 1 if non_blocking else 0))
        return handle.value

    def synchronize(self, stream=None):
        self.check("cuStreamSynchronize", self.lib.cuStreamSynchronize(stream))

    def query(self, stream):
        """CUDA_SUCCESS when `stream` has run all its work, else NOT_READY."""
        return self.lib.cuStreamQuery(stream)

    def destroy_stream(self, stream):
        self.check("cuStreamDestroy", self.lib.cuStreamDestroy_v2(stream))


class DeviceArray:
    """Device memory of a given shape and dtype, freed when collected. Each
    operation makes the driver's context current on the calling thread."""

    def __init__(self, driver, shape, dtype):
        self.driver = driver
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        pointer = ctypes.c_uint64(0)
        driver.make_current()
        if self.nbytes:
            driver.check("cuMemAlloc", driver.lib.cuMemAlloc_v2(
                ctypes.byref(pointer), self.nbytes))
        self.pointer = pointer.value

    @property
    def ctypes_pointer(self):
        return self.pointer or None

    def download(self):
        out = np.empty(self.shape, dtype=self.dtype)
        self.driver.make_current()
        if self.nbytes:
            self.driver.check("cuMemcpyDtoH", self.driver.lib.cuMemcpyDtoH_v2(
                out.ctypes.data, self.pointer, self.nbytes))
        return out

    def __del__(self):
        if getattr(self, "pointer", 0):
            try:
                self.driver.lib.cuMemFree_v2(self.pointer)
            except Exception:
                pass
            self.pointer = 0


_driver = None
_reason = None


def driver():
    """The process's Driver; raises CudaUnavailable (the same reason every
    time) when there is none."""
    global _driver, _reason
    if _driver is None and _reason is None:
        try:
            _driver = Driver()
        except (CudaUnavailable, CudaError) as e:
            _reason = str(e)
    if _driver is None:
        raise CudaUnavailable(_reason)
    return _driver


def unavailable_reason():
    """None when a CUDA device can be used, else why not."""
    try:
        driver()
        return None
    except CudaUnavailable as e:
        return str(e)
