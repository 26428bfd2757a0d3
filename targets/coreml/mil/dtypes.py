"""MIL data types -> numpy dtypes, and unpacking of sub-byte (int4/uint4/uint1..uint6) data.

Sub-byte values are decoded to int8 (signed) or uint8 (unsigned) arrays: numpy has no 4-bit dtype, and the
constexpr decompression ops only need the integer values.
"""

from __future__ import annotations

import numpy as np

# MIL.proto DataType enum values (stable across Core ML versions).
BOOL, STRING = 1, 2
FLOAT16, FLOAT32, FLOAT64, BFLOAT16 = 10, 11, 12, 13
INT8, INT16, INT32, INT64, INT4 = 21, 22, 23, 24, 25
UINT8, UINT16, UINT32, UINT64, UINT4, UINT2, UINT1, UINT6, UINT3 = 31, 32, 33, 34, 35, 36, 37, 38, 39
FLOAT8E4M3FN, FLOAT8E5M2 = 40, 41

NUMPY_DTYPE = {
    BOOL: np.dtype(np.bool_),
    FLOAT16: np.dtype(np.float16),
    FLOAT32: np.dtype(np.float32),
    FLOAT64: np.dtype(np.float64),
    INT8: np.dtype(np.int8),
    INT16: np.dtype(np.int16),
    INT32: np.dtype(np.int32),
    INT64: np.dtype(np.int64),
    UINT8: np.dtype(np.uint8),
    UINT16: np.dtype(np.uint16),
    UINT32: np.dtype(np.uint32),
    UINT64: np.dtype(np.uint64),
    INT4: np.dtype(np.int8),
    UINT4: np.dtype(np.uint8),
    UINT2: np.dtype(np.uint8),
    UINT1: np.dtype(np.uint8),
    UINT6: np.dtype(np.uint8),
    UINT3: np.dtype(np.uint8),
}

# (bit width, signed) of the packed sub-byte types.
SUB_BYTE = {
    INT4: (4, True), UINT4: (4, False), UINT3: (3, False), UINT2: (2, False), UINT1: (1, False), UINT6: (6, False),
}

NAMES = {
    BOOL: "bool", STRING: "string", FLOAT16: "fp16", FLOAT32: "fp32", FLOAT64: "fp64", BFLOAT16: "bf16",
    INT8: "int8", INT16: "int16", INT32: "int32", INT64: "int64", INT4: "int4",
    UINT8: "uint8", UINT16: "uint16", UINT32: "uint32", UINT64: "uint64",
    UINT4: "uint4", UINT2: "uint2", UINT1: "uint1", UINT6: "uint6", UINT3: "uint3",
    FLOAT8E4M3FN: "fp8e4m3fn", FLOAT8E5M2: "fp8e5m2",
}

# dtype strings used by the ``cast`` op and friends.
STRING_TO_NUMPY = {
    "bool": np.dtype(np.bool_), "fp16": np.dtype(np.float16), "fp32": np.dtype(np.float32),
    "fp64": np.dtype(np.float64), "int8": np.dtype(np.int8), "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32), "int64": np.dtype(np.int64), "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16), "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64),
}


def numpy_dtype(code: int) -> np.dtype:
    """numpy dtype used to hold values of MIL type ``code`` (KeyError if there is none)."""
    return NUMPY_DTYPE[code]


def name(code: int) -> str:
    return NAMES.get(code, f"dtype#{code}")


def packed_nbytes(code: int, count: int) -> int:
    """Bytes needed to store ``count`` elements of type ``code`` (sub-byte types are bit-packed)."""
    if code in SUB_BYTE:
        return (count * SUB_BYTE[code][0] + 7) // 8
    return count * NUMPY_DTYPE[code].itemsize


def unpack_sub_byte(raw: np.ndarray | bytes, code: int, count: int) -> np.ndarray:
    """Unpack ``count`` LSB-first bit-packed values (Core ML's layout) into int8/uint8."""
    nbits, signed = SUB_BYTE[code]
    packed = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    packed = packed.view(np.uint8).reshape(-1)
    if nbits == 4 and packed.size * 2 >= count:
        out = np.empty(packed.size * 2, dtype=np.uint8)
        out[0::2] = packed & 0x0F
        out[1::2] = packed >> 4
        vals = out[:count]
    elif nbits == 8:
        vals = packed[:count]
    else:
        bits = np.unpackbits(packed, bitorder="little")
        usable = (bits.size // nbits) * nbits
        if usable // nbits < count:
            raise ValueError(f"{packed.size} bytes hold fewer than {count} {nbits}-bit values")
        bits = bits[:usable].reshape(-1, nbits)[:count]
        weights = (1 << np.arange(nbits, dtype=np.uint16)).astype(np.uint16)
        vals = (bits.astype(np.uint16) @ weights).astype(np.uint8)
    if signed:
        sv = vals.astype(np.int16)
        sv[sv >= (1 << (nbits - 1))] -= 1 << nbits
        return sv.astype(np.int8)
    return vals.astype(np.uint8, copy=True)
