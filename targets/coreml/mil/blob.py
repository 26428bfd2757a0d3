"""Reader for Core ML's weight blob file (``Data/com.apple.CoreML/weights/weight.bin``).

Layout (MIL storage format, version 2), all little-endian:

* file header, 64 bytes: ``uint32 count``, ``uint32 version``, then reserved zeros;
* per blob, at the offset named by the program's ``BlobFileValue``: a 64-byte metadata record
  ``uint32 sentinel (0xDEADBEEF)``, ``uint32 dtype``, ``uint64 size_in_bytes``, ``uint64 data_offset``,
  then padding/reserved fields; the data itself lives at ``data_offset``.

We read the whole file into memory once (not mmap: a file truncated or rewritten under an mmap kills the
process with SIGBUS, and validation code rewrites packages) and hand out zero-copy read-only views. Every
offset and size is bounds-checked so a truncated or corrupted file raises ``MILPackageError`` naming the file.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from . import dtypes
from .errors import MILPackageError

SENTINEL = 0xDEADBEEF
HEADER_SIZE = 64
METADATA_SIZE = 64

# BlobDataType codes written by coremltools' MIL storage writer -> MIL DataType codes they may hold.
BLOB_DTYPE = {
    1: dtypes.FLOAT16, 2: dtypes.FLOAT32, 3: dtypes.UINT8, 4: dtypes.INT8, 5: dtypes.BFLOAT16,
    6: dtypes.INT16, 7: dtypes.UINT16, 8: dtypes.INT4, 9: dtypes.UINT1, 10: dtypes.UINT2,
    11: dtypes.UINT4, 12: dtypes.UINT3, 13: dtypes.UINT6, 14: dtypes.INT32, 15: dtypes.UINT32,
}


class BlobFile:
    """One weight file, read fully; ``read(offset, dtype, count)`` returns a decoded flat numpy array."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as f:
                self._data = f.read()
        except FileNotFoundError:
            raise MILPackageError(f"weight file {path} is missing") from None
        except OSError as e:
            raise MILPackageError(f"cannot read weight file {path}: {e.strerror or e}") from None
        if len(self._data) < HEADER_SIZE:
            raise MILPackageError(
                f"weight file {path} is truncated: {len(self._data)} bytes, shorter than its {HEADER_SIZE}-byte header"
            )
        self.count, self.version = struct.unpack_from("<II", self._data, 0)
        self._cache: dict[tuple, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._data)

    def metadata(self, offset: int) -> tuple[int, int, int]:
        """(blob dtype code, size in bytes, data offset) of the record at ``offset``."""
        size = len(self._data)
        where = f"weight file {self.path}"
        if offset < HEADER_SIZE or offset + METADATA_SIZE > size:
            raise MILPackageError(
                f"{where} is truncated or corrupt: blob metadata at offset {offset} lies outside the file "
                f"({size} bytes)"
            )
        sentinel, blob_dtype, nbytes, data_offset = struct.unpack_from("<IIQQ", self._data, offset)
        if sentinel != SENTINEL:
            raise MILPackageError(
                f"{where} is corrupt: no blob sentinel 0xDEADBEEF at offset {offset} (found 0x{sentinel:08X})"
            )
        if data_offset + nbytes > size:
            raise MILPackageError(
                f"{where} is truncated: blob at offset {offset} needs bytes {data_offset}..{data_offset + nbytes} "
                f"but the file has {size} bytes"
            )
        return blob_dtype, nbytes, data_offset

    def read(self, offset: int, mil_dtype: int, shape) -> np.ndarray:
        """Decode a ``shape`` array of MIL type ``mil_dtype`` from the blob whose metadata is at ``offset``.

        Cached: functions of a multifunction package that share a weight get the very same array object,
        which lets later caches (fp32 copies, decompressed constexprs) be shared too."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        key = (offset, mil_dtype, shape)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        count = int(np.prod(shape, dtype=np.int64))
        blob_dtype, nbytes, data_offset = self.metadata(offset)
        expected = BLOB_DTYPE.get(blob_dtype)
        compatible = expected == mil_dtype or {expected, mil_dtype} <= {dtypes.UINT8, dtypes.BOOL}
        if expected is not None and not compatible:
            raise MILPackageError(
                f"weight file {self.path} is inconsistent with the program: blob at offset {offset} stores "
                f"{dtypes.name(expected)} but the program expects {dtypes.name(mil_dtype)}"
            )
        need = dtypes.packed_nbytes(mil_dtype, count)
        if nbytes < need:
            raise MILPackageError(
                f"weight file {self.path} is corrupt: blob at offset {offset} has {nbytes} bytes, "
                f"{count} x {dtypes.name(mil_dtype)} needs {need}"
            )
        if mil_dtype in dtypes.SUB_BYTE:
            raw = np.frombuffer(self._data, dtype=np.uint8, count=need, offset=data_offset)
            arr = dtypes.unpack_sub_byte(raw, mil_dtype, count)
        else:
            np_dtype = dtypes.numpy_dtype(mil_dtype).newbyteorder("<")
            arr = np.frombuffer(self._data, dtype=np_dtype, count=count, offset=data_offset)
        arr = arr.reshape(shape)
        arr.flags.writeable = False
        self._cache[key] = arr
        return arr


class BlobStore:
    """All weight files of one package, opened lazily and shared by every function of the program."""

    def __init__(self, weights_dir: str):
        self.weights_dir = weights_dir
        self._files: dict[str, BlobFile] = {}

    def file(self, file_name: str) -> BlobFile:
        # The program names files as "@model_path/weights/weight.bin"; only the base name is meaningful.
        base = os.path.basename(file_name.replace("\\", "/"))
        if base not in self._files:
            self._files[base] = BlobFile(os.path.join(self.weights_dir, base))
        return self._files[base]

    def release(self) -> None:
        """Drop file contents (call once every constant has been materialised)."""
        self._files.clear()
