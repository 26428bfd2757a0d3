"""Compile a loaded MIL function into a flat list of numpy steps, and run it.

Compilation does the load-time work once: ``const`` ops become values, ``constexpr_*`` ops are decompressed
(cached per package, so functions sharing weights share the dense copy), fp16 weights feeding
linear/matmul/conv/einsum get a cached float32 copy, every argument is resolved to either a constant or a
variable slot, and each variable gets a "free after this step" mark so large activations do not pile up.
Running is then a tight loop: call the implementation, cast each result to its declared dtype, check the
declared static shape (which catches interpreter bugs as well as bad programs), drop dead values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MILExecutionError, MILPackageError, UnsupportedMILOp
from .loader import Block, Function, Literal, Operation, ValueType
from .ops_state import StateRef
from .optable import OpImpl, load_all

# Params whose constant fp16 values are widened to float32 once at load (see ops_linear).
WIDEN_PARAMS = {
    "linear": ("weight", "bias"),
    "matmul": ("x", "y"),
    "conv": ("weight", "bias"),
    "einsum": ("values",),
}
# Params that are tuples in the MIL spec even with one element.
TUPLE_PARAMS = {"values", "ref_tensors", "begins", "ends", "end_masks", "loop_vars"}

CONST = 0  # argument modes
VAR = 1
LIST = 2


class ConstCache:
    """Load-time values shared by all functions of one package: decompressed constexpr results and
    float32 copies of fp16 weights (bounded by ``widen_budget_bytes``; past it ops widen per call)."""

    def __init__(self, widen_budget_bytes: int):
        self._constexpr: dict[tuple, tuple[Any, list]] = {}
        self._widened: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.widen_budget = widen_budget_bytes
        self.widened_bytes = 0

    @staticmethod
    def _key_part(v):
        if isinstance(v, np.ndarray):
            return ("a", id(v))
        if isinstance(v, list):
            return ("l",) + tuple(ConstCache._key_part(x) for x in v)
        return ("v", repr(v))

    def constexpr(self, op_type: str, kwargs: dict, compute):
        key = (op_type,) + tuple((k, self._key_part(v)) for k, v in sorted(kwargs.items()))
        hit = self._constexpr.get(key)
        if hit is None:
            hit = (compute(), list(kwargs.values()))  # keep inputs alive so their ids stay unique
            self._constexpr[key] = hit
        return hit[0]

    def widen(self, v):
        if not isinstance(v, np.ndarray) or v.dtype != np.float16:
            return v
        hit = self._widened.get(id(v))
        if hit is not None:
            return hit[1]
        if self.widened_bytes + v.size * 4 > self.widen_budget:
            return v
        w = v.astype(np.float32)
        w.flags.writeable = False
        self._widened[id(v)] = (v, w)
        self.widened_bytes += w.nbytes
        return w


@dataclass
class Step:
    impl: OpImpl
    op: Operation
    args: list  # (param, mode, payload)
    outs: list  # (name, np dtype or None, static shape or None, rank or None)
    free: tuple = ()


@dataclass
class CompiledFunction:
    name: str
    inputs: list[tuple[str, ValueType]]  # non-state inputs
    states: list[tuple[str, ValueType]]
    outputs: list[str]
    output_types: dict[str, ValueType]
    steps: list[Step] = field(default_factory=list)
    consts: dict[str, Any] = field(default_factory=dict)  # outputs that are constants
    constants: dict[str, Any] | None = None  # every const/constexpr value, if compiled with keep_constants
    input_constraints: dict[str, tuple] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    def check_supported(self) -> None:
        if self.unsupported:
            raise UnsupportedMILOp(list(self.unsupported), self.name)

    def run(self, feeds: dict[str, np.ndarray], states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute with already type-checked ``feeds``; ``states`` is the working state dict (mutated)."""
        self.check_supported()
        env = dict(feeds)
        for step in self.steps:
            kwargs = {}
            for param, mode, payload in step.args:
                if mode == CONST:
                    kwargs[param] = payload
                elif mode == VAR:
                    kwargs[param] = env[payload]
                else:
                    kwargs[param] = [env[p] if m == VAR else p for m, p in payload]
            try:
                result = step.impl.fn(states, **kwargs) if step.impl.uses_state else step.impl.fn(**kwargs)
            except Exception as e:  # noqa: BLE001 - re-raised with the op's identity
                raise MILExecutionError(
                    f"op '{step.op.type}' named '{step.op.name}' in function '{self.name}' failed: "
                    f"{type(e).__name__}: {e}"
                ) from e
            if len(step.outs) == 1:
                result = (result,)
            elif not isinstance(result, (tuple, list)) or len(result) != len(step.outs):
                raise MILExecutionError(
                    f"op '{step.op.type}' named '{step.op.name}' returned the wrong number of outputs"
                )
            for (name, dt, shape, rank), value in zip(step.outs, result):
                env[name] = _conform(value, dt, shape, rank, step, self.name, name)
            for name in step.free:
                del env[name]
        return {name: (env[name] if name in env else self.consts[name]) for name in self.outputs}


def _conform(value, dt, shape, rank, step, fn_name, out_name):
    arr = np.asarray(value)
    if dt is not None and arr.dtype != dt:
        arr = arr.astype(dt)
    if shape is not None:
        if arr.shape != shape:
            raise MILExecutionError(
                f"op '{step.op.type}' named '{step.op.name}' in function '{fn_name}' produced '{out_name}' with "
                f"shape {arr.shape}, the program declares {shape}"
            )
    elif rank is not None and arr.ndim != rank:
        raise MILExecutionError(
            f"op '{step.op.type}' named '{step.op.name}' in function '{fn_name}' produced '{out_name}' with "
            f"rank {arr.ndim}, the program declares rank {rank}"
        )
    return arr


def _out_spec(name: str, vt: ValueType):
    rank = None if vt.shape is None else len(vt.shape)
    return (name, vt.np_dtype, vt.static_shape, rank)


def _as_declared(value, vt: ValueType):
    if isinstance(value, np.ndarray) and vt.np_dtype is not None and value.dtype != vt.np_dtype:
        value = value.astype(vt.np_dtype)
        value.flags.writeable = False
    return value


def compile_function(
    fn: Function, cache: ConstCache, table: dict[str, OpImpl] | None = None, keep_constants: bool = False
) -> CompiledFunction:
    table = load_all() if table is None else table
    block: Block = fn.block
    inputs = [(n, t) for n, t in fn.inputs if t.kind != "state"]
    states = [(n, t) for n, t in fn.inputs if t.kind == "state"]
    cf = CompiledFunction(fn.name, inputs, states, list(block.outputs), {})
    cf.input_constraints = dict(fn.input_constraints)
    consts: dict[str, Any] = {n: StateRef(n, t.np_dtype, t.shape) for n, t in states}
    defined = {n for n, _ in inputs}
    declared: dict[str, ValueType] = dict(fn.inputs)
    steps: list[Step] = []

    def where(op: Operation) -> str:
        return f"op '{op.type}' named '{op.name}' in function '{fn.name}'"

    def resolve(op: Operation, arg):
        if isinstance(arg, Literal):
            return CONST, arg.value
        if arg in consts:
            return CONST, consts[arg]
        if arg in defined:
            return VAR, arg
        raise MILPackageError(f"{where(op)} uses '{arg}', which is not defined before it")

    for op in block.operations:
        for name, vt in op.outputs:
            declared[name] = vt
        if op.type == "const":
            (out, vt), = op.outputs
            val = op.inputs.get("val")
            if not val or not isinstance(val[0], Literal):
                raise MILPackageError(f"{where(op)} has no value")
            consts[out] = _as_declared(val[0].value, vt)
            continue
        impl = table.get(op.type)
        if impl is None:
            cf.unsupported[op.type] = cf.unsupported.get(op.type, 0) + 1
            for name, _ in op.outputs:
                defined.add(name)
            continue
        if op.blocks:
            cf.unsupported[op.type] = cf.unsupported.get(op.type, 0) + 1  # control flow: not needed for LLMs
            for name, _ in op.outputs:
                defined.add(name)
            continue
        widen = WIDEN_PARAMS.get(op.type, ())
        args = []
        all_const = True
        for param, bound in op.inputs.items():
            resolved = [resolve(op, a) for a in bound]
            if param in widen:
                resolved = [(m, cache.widen(p) if m == CONST else p) for m, p in resolved]
            if len(resolved) == 1 and param not in TUPLE_PARAMS:
                args.append((param, resolved[0][0], resolved[0][1]))
                all_const &= resolved[0][0] == CONST
            elif all(m == CONST for m, _ in resolved):
                args.append((param, CONST, [p for _, p in resolved]))
            else:
                args.append((param, LIST, resolved))
                all_const = False
        outs = [_out_spec(n, vt) for n, vt in op.outputs]
        if op.type.startswith("constexpr_"):
            if not all_const:
                raise MILPackageError(f"{where(op)} has a non-constant input")
            kwargs = {p: payload for p, _, payload in args}

            def materialise(op=op, impl=impl, args=args, outs=outs, kwargs=kwargs):
                result = impl.fn(**kwargs)
                result = result if len(outs) > 1 else (result,)
                values = []
                for (name, dt, shape, rank), value in zip(outs, result):
                    val = _conform(value, dt, shape, rank, Step(impl, op, args, outs), fn.name, name)
                    val.flags.writeable = False
                    values.append(val)
                return values

            try:
                # Cached on the (shared) input arrays, so functions of one package decompress a weight once.
                for (name, *_), val in zip(outs, cache.constexpr(op.type, kwargs, materialise)):
                    consts[name] = val
            except MILExecutionError as e:
                raise MILPackageError(str(e)) from None
            except Exception as e:  # noqa: BLE001
                raise MILPackageError(f"cannot decompress {where(op)}: {type(e).__name__}: {e}") from None
            continue
        steps.append(Step(impl, op, args, outs))
        for name, _ in op.outputs:
            defined.add(name)

    for name in block.outputs:
        if name not in defined and name not in consts:
            raise MILPackageError(f"function '{fn.name}' returns '{name}', which no op defines")
    cf.output_types = {n: declared[n] for n in block.outputs if n in declared}
    cf.consts = {n: consts[n] for n in block.outputs if n in consts}
    if keep_constants:
        cf.constants = {n: v for n, v in consts.items() if not isinstance(v, StateRef)}

    # Liveness: free each variable right after its last reader (never the function's outputs).
    last_use: dict[str, int] = {}
    for i, step in enumerate(steps):
        for _, mode, payload in step.args:
            if mode == VAR:
                last_use[payload] = i
            elif mode == LIST:
                for m, p in payload:
                    if m == VAR:
                        last_use[p] = i
        for name, *_ in step.outs:
            last_use.setdefault(name, i)
    keep = set(block.outputs)
    frees: dict[int, list[str]] = {}
    for name, i in last_use.items():
        if name not in keep:
            frees.setdefault(i, []).append(name)
    for i, step in enumerate(steps):
        step.free = tuple(frees.get(i, ()))
    cf.steps = steps
    return cf
