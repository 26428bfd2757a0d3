"""Access to Core ML's protobuf classes (``Model_pb2``, ``MIL_pb2``) without importing all of coremltools.

``import coremltools`` pulls in torch, executorch and sklearn (~15 s here); the interpreter only needs the
generated protobuf modules that ship inside the coremltools wheel. If coremltools is already imported we use its
modules; otherwise the ``coremltools/proto`` directory is loaded under a private package name. Both routes
register the same serialized descriptors, which protobuf de-duplicates, so mixing them later is harmless.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

from .errors import MILPackageError

_ALIAS = "_elmexport_coreml_proto"


def _load():
    if "coremltools" in sys.modules:
        from coremltools.proto import MIL_pb2, Model_pb2  # noqa: PLC0415

        return Model_pb2, MIL_pb2
    if _ALIAS not in sys.modules:
        spec = importlib.util.find_spec("coremltools")
        if spec is None or not spec.submodule_search_locations:
            raise MILPackageError("coremltools is not installed: it provides the Core ML protobuf definitions")
        proto_dir = os.path.join(list(spec.submodule_search_locations)[0], "proto")
        pkg = types.ModuleType(_ALIAS)
        pkg.__path__ = [proto_dir]
        pkg.__package__ = _ALIAS
        sys.modules[_ALIAS] = pkg
    model_pb2 = importlib.import_module(f"{_ALIAS}.Model_pb2")
    mil_pb2 = importlib.import_module(f"{_ALIAS}.MIL_pb2")
    return model_pb2, mil_pb2


Model_pb2, MIL_pb2 = _load()
