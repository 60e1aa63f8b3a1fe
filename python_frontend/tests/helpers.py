"""A minimal safetensors writer, so tests make their own checkpoints."""

import json
import struct

import numpy as np

HF_CONFIGS = __import__("pathlib").Path(__file__).resolve().parent / "hf_configs"


def to_bf16_bits(a):
    """float32 -> bf16 bit patterns, rounded to nearest even."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


# Stored as given: integers, and float8 e4m3fn as its bytes.
RAW = {"U8": "u1", "I8": "i1", "I32": "<i4", "F8_E4M3": "u1"}


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: {name: float array}; every tensor stored as `dtype`
    (F32, F16 or BF16), or per tensor with {name: (array, dtype)}, dtype
    also one of RAW's."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        array, dt = value if isinstance(value, tuple) else (value, dtype)
        if dt == "F32":
            raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        elif dt == "F16":
            raw = np.ascontiguousarray(array, dtype="<f2").tobytes()
        elif dt == "BF16":
            raw = to_bf16_bits(array).astype("<u2").tobytes()
        elif dt in RAW:
            raw = np.ascontiguousarray(array, dtype=RAW[dt]).tobytes()
        else:
            raise ValueError(dt)
        header[name] = {"dtype": dt, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for raw in blobs:
            fh.write(raw)
