"""The instruction list of a `.pte`'s forward: each kernel or delegate call with the values it is handed.

Why: what a kernel costs per call depends on what the program hands it (the layout and strides of its tensors,
the position argument, the flags), and those are only final in the serialised program, after ExecuTorch's memory
planning and its own passes. Tests and benchmarks read them here instead of trusting the graph we exported.

    calls = read_calls(Path("model.pte"))
    [c for c in calls if c.op == "llama::custom_sdpa"][0].args[0]   # Value(kind="tensor", sizes=[1, 256, 9, 64], ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Value:
    index: int  # the EValue index in the plan: the same index is the same tensor or scalar
    kind: str  # tensor, int, bool, double, null, other
    sizes: tuple = ()  # tensors: sizes (upper bounds for dynamic ones)
    dim_order: tuple = ()
    dynamic: bool = False
    constant: bool = False  # tensors: stored in the program (weights), not planned memory
    scalar: object = None  # int / bool / double values


@dataclass(frozen=True)
class Call:
    op: str  # "llama::custom_sdpa", "aten::index", ... or "delegate"
    args: tuple = field(default_factory=tuple)  # Values in the call's order (kernel calls end with their out args)


def _value(plan, index: int) -> Value:
    val = plan.values[index].val
    kind = type(val).__name__
    if kind == "Tensor":
        return Value(index, "tensor", tuple(val.sizes), tuple(val.dim_order), dynamic=val.shape_dynamism != 0,
                     constant=val.allocation_info is None)
    for name, attr in (("int", "int_val"), ("bool", "bool_val"), ("double", "double_val")):
        if kind.lower() == name:
            return Value(index, name, scalar=getattr(val, attr))
    return Value(index, "null" if kind == "Null" else "other")


def read_calls(pte: Path, method: str = "forward") -> list[Call]:
    """The calls of `method` in execution order (moves, jumps and frees left out)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(pte).read_bytes())
    program = getattr(program, "program", program)  # newer ExecuTorch wraps the Program with its named data
    plan = next(p for p in program.execution_plan if p.name == method)
    calls = []
    for instruction in plan.chains[0].instructions:
        args = instruction.instr_args
        kind = type(args).__name__
        if kind == "KernelCall":
            calls.append(Call(plan.operators[args.op_index].name, tuple(_value(plan, i) for i in args.args)))
        elif kind == "DelegateCall":
            calls.append(Call("delegate", tuple(_value(plan, i) for i in args.args)))
    return calls
