"""Load a saved ``.mlpackage`` into a small, numpy-valued program representation.

We parse the ``Model`` protobuf ourselves (rather than through coremltools' milproto -> pymil loader) because:
pymil re-runs type inference for every op and rejects ops it does not know, which would hide the op name we
want in ``UnsupportedMILOp``; its weight reader is a C++ extension with no bounds errors we can map to
``MILPackageError``; and importing coremltools costs ~15 s. Constants become numpy arrays here (weights are
zero-copy views of the blob file); everything else stays symbolic for the executor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes
from .blob import BlobStore
from .errors import MILPackageError
from .proto import Model_pb2

DEFAULT_MODEL_PATH = os.path.join("Data", "com.apple.CoreML", "model.mlmodel")


@dataclass(frozen=True)
class ValueType:
    """Declared type of a MIL value: kind ('tensor', 'state', 'list', ...), MIL dtype code, shape.

    ``shape`` entries are ``None`` for dimensions unknown at compile time (flexible inputs)."""

    kind: str
    dtype: int | None = None
    shape: tuple | None = ()

    @property
    def np_dtype(self) -> np.dtype | None:
        return dtypes.NUMPY_DTYPE.get(self.dtype) if self.dtype is not None else None

    @property
    def static_shape(self) -> tuple | None:
        if self.shape is None or any(d is None for d in self.shape):
            return None
        return self.shape

    def __str__(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        core = f"{dtypes.name(self.dtype) if self.dtype is not None else '?'}[{dims}]"
        return f"state<{core}>" if self.kind == "state" else core


@dataclass(frozen=True)
class Literal:
    """An op argument given by value (a constant folded into the op) rather than by variable name."""

    value: Any


@dataclass
class Operation:
    type: str
    name: str
    inputs: dict[str, list]  # param -> list of variable names (str) and Literal
    outputs: list[tuple[str, ValueType]]
    blocks: list["Block"] = field(default_factory=list)


@dataclass
class Block:
    inputs: list[tuple[str, ValueType]]
    operations: list[Operation]
    outputs: list[str]


@dataclass
class Function:
    name: str
    inputs: list[tuple[str, ValueType]]
    opset: str
    block: Block
    # Shape constraints from the model description (flexible inputs): name -> ("range", [(lo, hi)]) with
    # hi == -1 for unbounded, or ("enumerated", [shape, ...]). Core ML rejects inputs outside them.
    input_constraints: dict[str, tuple] = field(default_factory=dict)


@dataclass
class Program:
    path: str
    spec_version: int
    functions: dict[str, Function]
    default_function: str
    metadata: dict[str, str]


# ----------------------------------------------------------------------------------------------- types


def parse_type(vt) -> ValueType:
    which = vt.WhichOneof("type")
    if which == "tensorType":
        tt = vt.tensorType
        if tt.rank < 0:
            return ValueType("tensor", tt.dataType, None)
        dims = []
        for d in tt.dimensions:
            dims.append(d.constant.size if d.WhichOneof("dimension") == "constant" else None)
        return ValueType("tensor", tt.dataType, tuple(dims))
    if which == "stateType":
        inner = parse_type(vt.stateType.wrappedType)
        return ValueType("state", inner.dtype, inner.shape)
    if which == "listType":
        inner = parse_type(vt.listType.type)
        return ValueType("list", inner.dtype, inner.shape)
    if which in ("tupleType", "dictionaryType"):
        return ValueType(which[: -len("Type")], None, None)
    raise ValueError(f"value type {which!r} is not supported")


# ---------------------------------------------------------------------------------------------- values


def _decode_tensor(tv, vtype: ValueType):
    code = vtype.dtype
    shape = vtype.shape or ()
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    which = tv.WhichOneof("value")
    if code == dtypes.STRING:
        vals = [s.decode() if isinstance(s, bytes) else s for s in (tv.strings.values if which else [])]
        return vals[0] if not shape and vals else np.array(vals, dtype=object).reshape(shape)
    np_dtype = dtypes.numpy_dtype(code)
    if which is None:
        arr = np.zeros(shape, dtype=np_dtype)
    elif which == "bytes":
        raw = tv.bytes.values
        if code in dtypes.SUB_BYTE:
            arr = dtypes.unpack_sub_byte(raw, code, count)
        else:
            arr = np.frombuffer(raw, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
    else:
        src = {"floats": np.float32, "doubles": np.float64, "ints": np.int64, "longInts": np.int64, "bools": np.bool_}
        if which not in src:
            raise ValueError(f"tensor field {which!r} does not hold {dtypes.name(code)} data")
        arr = np.array(getattr(tv, which).values, dtype=src[which]).astype(np_dtype)
    if arr.size != count:
        raise ValueError(f"holds {arr.size} values, its type {vtype} needs {count}")
    arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr


def decode_value(value, blobs: BlobStore):
    vtype = parse_type(value.type)
    which = value.WhichOneof("value")
    if vtype.kind == "dictionary" or vtype.kind == "tuple":
        return None  # only used for program attributes; never an op input we evaluate
    if vtype.kind != "tensor":
        raise ValueError(f"constant of kind {vtype.kind!r} is not supported")
    if vtype.shape is None or any(d is None for d in vtype.shape):
        raise ValueError(f"constant with non-static type {vtype}")
    if which == "immediateValue":
        iv = value.immediateValue
        kind = iv.WhichOneof("value")
        if kind == "tensor":
            return _decode_tensor(iv.tensor, vtype)
        if kind == "list":
            return [decode_value(v, blobs) for v in iv.list.values]
        raise ValueError(f"immediate value kind {kind!r} is not supported")
    if which == "blobFileValue":
        bf = value.blobFileValue
        return blobs.file(bf.fileName).read(bf.offset, vtype.dtype, vtype.shape)
    raise ValueError("value has neither an immediate value nor a blob reference")


# ---------------------------------------------------------------------------------------- operations


def _parse_block(block_pb, blobs: BlobStore, fn_name: str) -> Block:
    ops = []
    for op_pb in block_pb.operations:
        op_name = ""
        if "name" in op_pb.attributes:
            try:
                op_name = str(decode_value(op_pb.attributes["name"], blobs))
            except Exception:  # noqa: BLE001 - a bad name is not worth failing the load
                op_name = ""
        if not op_name and op_pb.outputs:
            op_name = op_pb.outputs[0].name
        where = f"op '{op_pb.type}' named '{op_name}' in function '{fn_name}'"
        try:
            inputs: dict[str, list] = {}
            for key, val in op_pb.attributes.items():  # iOS16 constexpr ops and `const` carry data here
                if key != "name":
                    inputs[key] = [Literal(decode_value(val, blobs))]
            for key, arg in op_pb.inputs.items():
                bound = []
                for b in arg.arguments:
                    kind = b.WhichOneof("binding")
                    if kind == "name":
                        bound.append(b.name)
                    elif kind == "value":
                        bound.append(Literal(decode_value(b.value, blobs)))
                    else:
                        raise ValueError(f"argument of parameter '{key}' has no binding")
                inputs[key] = bound
            outputs = [(o.name, parse_type(o.type)) for o in op_pb.outputs]
        except MILPackageError as e:
            raise MILPackageError(f"{e} (while loading {where})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise MILPackageError(f"{where} has an invalid argument: {e}") from None
        blocks = [_parse_block(b, blobs, fn_name) for b in op_pb.blocks]
        ops.append(Operation(op_pb.type, op_name, inputs, outputs, blocks))
    try:
        block_inputs = [(i.name, parse_type(i.type)) for i in block_pb.inputs]
    except ValueError as e:
        raise MILPackageError(f"a block in function '{fn_name}' has an invalid input type: {e}") from None
    return Block(block_inputs, ops, list(block_pb.outputs))


# ------------------------------------------------------------------------------------------- package


def _model_file(package: str) -> str:
    if not os.path.exists(package):
        raise MILPackageError(f"{package} does not exist")
    if os.path.isfile(package):
        raise MILPackageError(
            f"{package} is a file; expected an .mlpackage directory (ML Programs keep weights beside the spec)"
        )
    manifest = os.path.join(package, "Manifest.json")
    rel = DEFAULT_MODEL_PATH
    if os.path.isfile(manifest):
        try:
            with open(manifest, encoding="utf-8") as f:
                info = json.load(f)
            root = info["rootModelIdentifier"]
            rel = os.path.join("Data", info["itemInfoEntries"][root]["path"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MILPackageError(f"{manifest} is unreadable or malformed: {type(e).__name__}: {e}") from None
    path = os.path.join(package, rel)
    if not os.path.isfile(path):
        raise MILPackageError(f"{package} has no model spec: {path} is missing")
    return path


def _shape_constraints(features) -> dict[str, tuple]:
    out = {}
    for feat in features:
        if feat.type.WhichOneof("Type") != "multiArrayType":
            continue
        arr = feat.type.multiArrayType
        flex = arr.WhichOneof("ShapeFlexibility")
        if flex == "shapeRange":
            out[feat.name] = ("range", [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges])
        elif flex == "enumeratedShapes":
            out[feat.name] = ("enumerated", [tuple(s.shape) for s in arr.enumeratedShapes.shapes])
    return out


def load_program(package: str) -> Program:
    """Parse ``package`` (an ``.mlpackage`` directory) into a ``Program``; raise ``MILPackageError`` if broken."""
    package = os.fspath(package)
    model_path = _model_file(package)
    try:
        with open(model_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise MILPackageError(f"cannot read {model_path}: {e.strerror or e}") from None
    model = Model_pb2.Model()
    try:
        model.ParseFromString(raw)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError depending on backend
        raise MILPackageError(f"{model_path} is not a valid Core ML model protobuf ({type(e).__name__}: {e})") from None
    kind = model.WhichOneof("Type")
    if kind != "mlProgram":
        what = f"a '{kind}' model" if kind else "no model at all (empty or corrupt protobuf)"
        raise MILPackageError(f"{model_path} holds {what}, not an ML Program")
    prog = model.mlProgram
    if not prog.functions:
        raise MILPackageError(f"{model_path} has an ML Program with no functions")
    blobs = BlobStore(os.path.join(os.path.dirname(model_path), "weights"))
    functions = {}
    for fname, fn in prog.functions.items():
        opset = fn.opset
        if opset not in fn.block_specializations:
            if len(fn.block_specializations) != 1:
                raise MILPackageError(f"function '{fname}' in {model_path} has no block for its opset {opset!r}")
            opset = next(iter(fn.block_specializations))
        try:
            inputs = [(i.name, parse_type(i.type)) for i in fn.inputs]
        except ValueError as e:
            raise MILPackageError(f"function '{fname}' in {model_path} has an invalid input type: {e}") from None
        block = _parse_block(fn.block_specializations[opset], blobs, fname)
        functions[fname] = Function(fname, inputs, opset, block)
    desc = model.description
    described = {f.name: f.input for f in desc.functions}
    for fname, fn in functions.items():
        features = described.get(fname, desc.input if (not described and len(functions) == 1) else [])
        fn.input_constraints = _shape_constraints(features)
    default = desc.defaultFunctionName or ("main" if "main" in functions else next(iter(functions)))
    if default not in functions:
        raise MILPackageError(f"{model_path} names default function '{default}', which the program does not define")
    metadata = dict(desc.metadata.userDefined) if desc.HasField("metadata") else {}
    return Program(package, model.specificationVersion, functions, default, metadata)
