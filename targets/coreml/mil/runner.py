"""``MILProgramRunner``: run a saved Core ML ``.mlpackage`` (ML Program) with numpy, on any OS.

Mirrors the parts of ``coremltools.models.MLModel`` that LLM validation needs: several functions per package
(``save_multifunction`` output), ``make_state()`` shared by those functions (prefill then decode on one KV
cache), and ``predict(inputs, state)``. State here is a plain ``dict[str, np.ndarray]`` so a test can compare the
cache with a torch buffer; ``predict`` updates the caller's arrays in place.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import MILInputError
from .executor import CompiledFunction, ConstCache, compile_function
from .loader import ValueType, load_program

DEFAULT_WIDEN_BUDGET = 6 << 30  # bytes of float32 weight copies kept (see executor.ConstCache)


def _blas_limiter(threads: int | None):
    """Context-manager factory pinning BLAS to ``threads`` threads during predict, or None.

    Decode steps are thousands of tiny GEMVs; multi-threaded OpenBLAS spends more time waking and syncing
    threads than computing (7 ms instead of 0.2 ms per 1536x576 GEMV on a busy 2-core machine), and one
    thread also makes results bit-reproducible. Uses threadpoolctl when it is installed; otherwise a no-op."""
    if threads is None:
        return None
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415
    except ImportError:
        return None
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=threads, user_api="blas")


class MILProgramRunner:
    """Numpy interpreter for one ``.mlpackage``.

    Everything expensive (parsing, weight decoding, constexpr decompression, fp32 weight copies) happens in
    the constructor, once for all functions; ``predict`` only runs ops. Unsupported ops raise
    ``UnsupportedMILOp`` from the constructor for the selected function, or from ``predict`` for another one.

    Args:
        path: the ``.mlpackage`` directory.
        function_name: function used when ``predict`` gets none; default: the package's default ("main").
        fp32_weight_cache_bytes: budget for float32 copies of fp16 weights (fast BLAS matmuls); weights past
            it are widened on every call instead.
        keep_constants: keep every const/constexpr value for ``constants()`` (tests of weight decoding).
        blas_threads: BLAS threads during ``predict`` (1: fastest for decode steps and reproducible;
            None: leave BLAS alone).
    """

    def __init__(
        self,
        path,
        function_name: str | None = None,
        *,
        fp32_weight_cache_bytes: int = DEFAULT_WIDEN_BUDGET,
        keep_constants: bool = False,
        blas_threads: int | None = 1,
    ):
        self.path = os.fspath(path)
        self.program = load_program(self.path)
        self._cache = ConstCache(fp32_weight_cache_bytes)
        self._functions: dict[str, CompiledFunction] = {
            name: compile_function(fn, self._cache, keep_constants=keep_constants)
            for name, fn in self.program.functions.items()
        }
        self.function_name = self._resolve(function_name).name
        self._functions[self.function_name].check_supported()
        self._state_types = self._collect_states()
        self._limit_blas = _blas_limiter(blas_threads)

    # ------------------------------------------------------------------------------------------ metadata

    @property
    def function_names(self) -> list[str]:
        return list(self._functions)

    @property
    def weight_cache_bytes(self) -> int:
        """Bytes of float32 weight copies made at load (shared by all functions of the package)."""
        return self._cache.widened_bytes

    @property
    def default_function_name(self) -> str:
        return self.program.default_function

    def _resolve(self, function_name: str | None) -> CompiledFunction:
        name = function_name or getattr(self, "function_name", None) or self.program.default_function
        fn = self._functions.get(name)
        if fn is None:
            raise MILInputError(
                f"{self.path} has no function '{name}'; it has: {', '.join(repr(n) for n in self._functions)}"
            )
        return fn

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self._resolve(None).inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self._resolve(None).outputs)

    @property
    def state_names(self) -> list[str]:
        return [n for n, _ in self._resolve(None).states]

    def describe(self, function_name: str | None = None) -> dict:
        """Inputs/outputs/states of a function as ``{name: {"shape": (...), "dtype": np.dtype}}`` dicts.

        Unknown (flexible) dimensions are ``None``."""
        fn = self._resolve(function_name)

        def spec(vt: ValueType):
            return {"shape": vt.shape, "dtype": vt.np_dtype}

        inputs = {n: spec(t) for n, t in fn.inputs}
        for n, (kind, rule) in fn.input_constraints.items():
            if n in inputs:
                inputs[n][kind] = rule  # "range": [(lo, hi or -1)] per dim, or "enumerated": [shape, ...]
        return {
            "function": fn.name,
            "inputs": inputs,
            "outputs": {n: spec(fn.output_types[n]) for n in fn.outputs if n in fn.output_types},
            "states": {n: spec(t) for n, t in fn.states},
        }

    def constants(self, function_name: str | None = None) -> dict[str, np.ndarray]:
        """Every ``const``/``constexpr_*`` value of a function as the interpreter materialised it (dequantised
        weights included), for checking weight decompression. Needs ``keep_constants=True``."""
        fn = self._resolve(function_name)
        if fn.constants is None:
            raise MILInputError("constants were not kept; construct the runner with keep_constants=True")
        return dict(fn.constants)

    # --------------------------------------------------------------------------------------------- state

    def _collect_states(self) -> dict[str, ValueType]:
        types: dict[str, ValueType] = {}
        for fn in self._functions.values():
            for name, vt in fn.states:
                prev = types.get(name)
                if prev is not None and (prev.dtype, prev.shape) != (vt.dtype, vt.shape):
                    raise MILInputError(
                        f"state '{name}' is declared as {prev} and as {vt} by different functions of {self.path}"
                    )
                types[name] = vt
        return types

    def make_state(self) -> dict[str, np.ndarray]:
        """Zero-filled arrays for every state of every function (Core ML also starts states at zero)."""
        return {n: np.zeros(vt.static_shape, dtype=vt.np_dtype) for n, vt in self._state_types.items()}

    @staticmethod
    def read_state(state: dict, name: str) -> np.ndarray:
        return np.array(state[name])

    @staticmethod
    def write_state(state: dict, name: str, value) -> None:
        np.copyto(state[name], np.asarray(value), casting="same_kind")

    # ------------------------------------------------------------------------------------------- predict

    def _check_feeds(self, fn: CompiledFunction, inputs: dict) -> dict[str, np.ndarray]:
        expected = ", ".join(f"{n}: {t}" for n, t in fn.inputs)
        names = {n for n, _ in fn.inputs}
        missing = [n for n in names if n not in inputs]
        unknown = [n for n in inputs if n not in names]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing input(s) {sorted(missing)}")
            if unknown:
                parts.append(f"unknown input(s) {sorted(unknown)}")
            raise MILInputError(f"function '{fn.name}': {'; '.join(parts)}; it expects {expected}")
        feeds = {}
        for name, vt in fn.inputs:
            arr = np.asarray(inputs[name])
            if vt.shape is not None:
                ok = arr.ndim == len(vt.shape) and all(d is None or d == s for d, s in zip(vt.shape, arr.shape))
                if not ok:
                    raise MILInputError(
                        f"function '{fn.name}': input '{name}' has shape {arr.shape}, expected {vt}"
                    )
            self._check_flexible_shape(fn, name, arr.shape)
            dt = vt.np_dtype
            if dt is not None and arr.dtype != dt:
                if np.issubdtype(dt, np.integer) and arr.size and np.issubdtype(arr.dtype, np.number):
                    info = np.iinfo(dt)
                    integral = not np.issubdtype(arr.dtype, np.floating) or np.all(arr == np.round(arr))
                    if not integral or arr.min() < info.min or arr.max() > info.max:
                        raise MILInputError(f"function '{fn.name}': input '{name}' values do not fit {vt}")
                arr = arr.astype(dt)
            feeds[name] = arr
        return feeds

    @staticmethod
    def _check_flexible_shape(fn: CompiledFunction, name: str, shape: tuple) -> None:
        rule = fn.input_constraints.get(name)
        if rule is None:
            return
        kind, spec = rule
        if kind == "enumerated":
            if tuple(shape) not in spec:
                raise MILInputError(
                    f"function '{fn.name}': input '{name}' has shape {shape}, not one of its enumerated shapes {spec}"
                )
        elif len(spec) == len(shape):
            for dim, (lo, hi) in enumerate(spec):
                if shape[dim] < lo or (hi >= 0 and shape[dim] > hi):
                    bound = f"[{lo}, {hi if hi >= 0 else 'inf'}]"
                    raise MILInputError(
                        f"function '{fn.name}': input '{name}' dim {dim} is {shape[dim]}, outside its range {bound}"
                    )

    def _check_state(self, fn: CompiledFunction, state) -> dict:
        if not fn.states:
            return {}
        if state is None:
            raise MILInputError(f"function '{fn.name}' is stateful; pass state=runner.make_state()")
        work = {}
        for name, vt in fn.states:
            if name not in state:
                raise MILInputError(f"state dict has no '{name}' (function '{fn.name}' needs {vt})")
            arr = np.asarray(state[name])
            if arr.shape != vt.static_shape:
                raise MILInputError(f"state '{name}' has shape {arr.shape}, function '{fn.name}' needs {vt}")
            work[name] = arr if arr.dtype == vt.np_dtype else arr.astype(vt.np_dtype)
        return work

    def predict(self, inputs: dict, state: dict | None = None, function_name: str | None = None) -> dict:
        """Run one function. ``state`` (from ``make_state``) is updated in place; returns fresh output arrays."""
        fn = self._resolve(function_name)
        fn.check_supported()
        feeds = self._check_feeds(fn, inputs)
        work = self._check_state(fn, state)
        initial = dict(work)
        # IEEE semantics like Core ML: fp16 overflow to inf and -inf masks are normal, not warnings.
        with np.errstate(all="ignore"):
            if self._limit_blas is None:
                outputs = fn.run(feeds, work)
            else:
                with self._limit_blas():
                    outputs = fn.run(feeds, work)
        # Copy outputs before writing states back: an output may be a view of a caller's state array.
        outputs = {name: np.array(value) for name, value in outputs.items()}
        for name, value in work.items():
            if value is initial[name]:
                continue
            target = state[name]
            if isinstance(target, np.ndarray) and target.flags.writeable and target.shape == value.shape:
                np.copyto(target, value, casting="unsafe")
            else:
                state[name] = np.array(value)
        return outputs

    def __repr__(self) -> str:
        return f"MILProgramRunner({self.path!r}, function_name={self.function_name!r}, functions={self.function_names})"
