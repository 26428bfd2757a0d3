"""Test helpers for the MIL interpreter: tiny torch models with a torch.export -> coremltools conversion, and
single-op MIL programs (``OpCase``), saved together as one multifunction package (conftest.op_runner).

The models are small on purpose (each converts in a few seconds) but use the same constructs a real LLM export
does: embeddings, RMSNorm/LayerNorm, RoPE, grouped-query attention through SDPA with bool or float masks,
SiLU/GELU MLPs, a tied LM head, and a KV cache kept in registered buffers that forward() mutates, so
coremltools turns it into Core ML states written with ``slice_update`` (slice assignment) or ``scatter_nd``
(index_put with a position tensor).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionBlock(nn.Module):
    """Pre-norm transformer block without cache: LayerNorm, SDPA (causal bool or float mask), GELU MLP."""

    def __init__(self, dim=32, heads=4, kv_heads=2, mask="bool"):
        super().__init__()
        self.heads, self.kv_heads, self.hd, self.mask = heads, kv_heads, dim // heads, mask
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q = nn.Linear(dim, heads * self.hd)
        self.k = nn.Linear(dim, kv_heads * self.hd)
        self.v = nn.Linear(dim, kv_heads * self.hd)
        self.o = nn.Linear(heads * self.hd, dim)
        self.up = nn.Linear(dim, 3 * dim)
        self.down = nn.Linear(3 * dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        mask = causal if self.mask == "bool" else torch.zeros(t, t).masked_fill(~causal, float("-inf"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        x = x + self.down(F.gelu(self.up(self.norm2(x))))
        return torch.softmax(x, dim=-1) * 4.0 + x.mean(dim=-1, keepdim=True)


class TinyCachedLM(nn.Module):
    """Llama-style decoder with a KV cache in buffers, one pair of buffers per layer.

    cache="slice":     k_cache_i [1, KVH, MAXT, HD], written as ``cache[:, :, p:p+T] = k`` (p from ``.item()``)
    cache="index_put": k_cache_i [MAXT, KVH, HD],    written as ``cache[positions] = k`` (positions tensor)
    Attention runs over the whole cache with a mask ``key_pos <= query_pos`` (bool, or float for layer 1).
    """

    def __init__(self, vocab=64, dim=32, heads=4, kv_heads=2, layers=2, max_len=16, cache="slice", ffn=None):
        super().__init__()
        self.heads, self.kv_heads, self.hd, self.max_len, self.cache = heads, kv_heads, dim // heads, max_len, cache
        self.layers = layers
        self.emb = nn.Embedding(vocab, dim)
        self.n1 = nn.ModuleList(nn.RMSNorm(dim, eps=1e-5) for _ in range(layers))
        self.n2 = nn.ModuleList(nn.RMSNorm(dim, eps=1e-5) for _ in range(layers))
        self.qkv = nn.ModuleList(nn.Linear(dim, (heads + 2 * kv_heads) * self.hd, bias=False) for _ in range(layers))
        self.o = nn.ModuleList(nn.Linear(heads * self.hd, dim, bias=False) for _ in range(layers))
        ffn = ffn or 2 * dim
        self.gate = nn.ModuleList(nn.Linear(dim, ffn, bias=False) for _ in range(layers))
        self.up = nn.ModuleList(nn.Linear(dim, ffn, bias=False) for _ in range(layers))
        self.down = nn.ModuleList(nn.Linear(ffn, dim, bias=False) for _ in range(layers))
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        shape = (1, kv_heads, max_len, self.hd) if cache == "slice" else (max_len, kv_heads, self.hd)
        for i in range(layers):
            self.register_buffer(f"k_cache_{i}", torch.zeros(shape))
            self.register_buffer(f"v_cache_{i}", torch.zeros(shape))
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd))
        freqs = torch.outer(torch.arange(max_len).float(), inv)
        self.register_buffer("cos", torch.cat([freqs, freqs], -1).cos(), persistent=False)
        self.register_buffer("sin", torch.cat([freqs, freqs], -1).sin(), persistent=False)

    def state_names(self):
        return [f"{kind}_cache_{i}" for i in range(self.layers) for kind in ("k", "v")]

    def _rope(self, x, cos, sin):
        half = self.hd // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, input_ids, pos):
        t = input_ids.shape[1]
        positions = pos[0] + torch.arange(t)
        cos, sin = self.cos[positions], self.sin[positions]
        if self.cache == "slice":
            p = pos[0].item()
            torch._check(p >= 0)
            torch._check(p + t <= self.max_len)
        allowed = torch.arange(self.max_len)[None, :] <= positions[:, None]
        x = self.emb(input_ids)
        for i in range(self.layers):
            h = self.n1[i](x)
            q, k, v = self.qkv[i](h).split([self.heads * self.hd, self.kv_heads * self.hd, self.kv_heads * self.hd], -1)
            q = self._rope(q.view(1, t, self.heads, self.hd).transpose(1, 2), cos, sin)
            k = self._rope(k.view(1, t, self.kv_heads, self.hd).transpose(1, 2), cos, sin)
            v = v.view(1, t, self.kv_heads, self.hd).transpose(1, 2)
            kc, vc = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
            if self.cache == "slice":
                kc[:, :, p : p + t] = k
                vc[:, :, p : p + t] = v
                keys, values = kc, vc
            else:
                kc[positions] = k[0].transpose(0, 1)
                vc[positions] = v[0].transpose(0, 1)
                keys, values = kc.permute(1, 0, 2)[None], vc.permute(1, 0, 2)[None]
            rep = self.heads // self.kv_heads
            keys, values = keys.repeat_interleave(rep, dim=1), values.repeat_interleave(rep, dim=1)
            mask = allowed if i == 0 else torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
            a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            x = x + self.o[i](a.transpose(1, 2).reshape(1, t, -1))
            h = self.n2[i](x)
            x = x + self.down[i](F.silu(self.gate[i](h)) * self.up[i](h))
        return F.linear(self.norm(x), self.emb.weight)


def convert(model, example_args, input_specs, precision="fp16", states=()):
    """torch.export + run_decompositions + ct.convert to an iOS18 ML Program (the project's export path).

    input_specs: [(name, shape, numpy dtype)]; states: [(buffer name, shape)], stored as fp16 (Core ML
    states are fp16-only)."""
    import coremltools as ct

    with torch.no_grad():
        ep = torch.export.export(model.eval(), tuple(example_args)).run_decompositions({})
    return ct.convert(
        ep,
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        inputs=[ct.TensorType(name=n, shape=s, dtype=d) for n, s, d in input_specs],
        states=[ct.StateType(wrapped_type=ct.TensorType(shape=s, dtype=np.float16), name=n) for n, s in states],
        skip_model_load=True,
    )


def save_mil_program(prog, path, precision=None):
    """Convert a MIL builder program to an iOS18 ML Program with no graph passes and save it at ``path``."""
    import coremltools as ct

    mlmodel = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=precision or ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
        skip_model_load=True,
    )
    mlmodel.save(str(path))
    return path


# ------------------------------------------------------------------------------------ single-op programs

# Inputs shared by the op cases (fixed seeds): a rank-3 tensor with gather/scatter indices in [-8, 8), a
# rank-3 tensor with hand-picked indices (negative ones included), and a rank-4 NCHW-like tensor.
_rng8 = np.random.default_rng(8)
X_238 = _rng8.standard_normal((2, 3, 8)).astype(np.float32)
IDX_234 = _rng8.integers(-8, 8, size=(2, 3, 4)).astype(np.int32)
X_256 = np.random.default_rng(9).standard_normal((2, 5, 6)).astype(np.float32)
IDX_23 = np.array([[0, -1, 3], [4, 2, -5]], np.int32)
X_2436 = np.random.default_rng(10).standard_normal((2, 4, 3, 6)).astype(np.float32)

# Tolerances: (atol, rtol). fp32 ops on O(1) values; the rank-4 cases allow a little more.
TOL = (2e-5, 1e-5)
TOL_RANK4 = (3e-5, 2e-5)


@dataclass(frozen=True)
class OpCase:
    """One MIL op (or a small family that cannot run alone) as its own function of an ML Program.

    ``build`` takes the function's inputs as arguments named like the keys of ``inputs`` and returns the
    output var(s); ``want`` takes the same arrays (positionally, in that order) and returns the expected
    array(s) (numpy or torch), computed without the interpreter. ``ops`` is the exact set of MIL op types
    the function holds (consts aside)."""

    name: str
    ops: frozenset
    inputs: dict
    build: Callable
    want: Callable[..., Any]
    atol: float
    rtol: float


def op_case(name: str, ops: str, inputs: dict, build: Callable, want: Callable, tol=TOL) -> OpCase:
    """``ops``: the MIL op types the function holds, space-separated (the op under test first)."""
    params = list(inspect.signature(build).parameters)
    assert params == list(inputs), f"{name}: build takes {params}, inputs are {list(inputs)}"
    return OpCase(name, frozenset(ops.split()), inputs, build, want, *tol)


def torch_ref(fn: Callable) -> Callable:
    """A reference written with torch ops: numpy inputs in, numpy output(s) out."""

    def ref(*arrays):
        out = fn(*map(torch.from_numpy, arrays))
        return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()

    return ref


def save_op_package(cases, path):
    """Every case as one function of a single iOS18 ML Program (one conversion), saved at ``path``.

    The package's default function, ``main``, is a lone ``identity``: a runner opens the package on it and
    runs each case by name, so an op the interpreter lacks fails its own case only."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import Program, types

    names = [c.name for c in cases]
    assert len(set(names)) == len(names) and "main" not in names, "op case names must be unique and not 'main'"
    prog = Program()
    prog.add_function("main", mb.function([mb.TensorSpec(shape=(1,))], ct.target.iOS18)(lambda x: mb.identity(x=x)))
    for case in cases:
        specs = [
            mb.TensorSpec(shape=a.shape, dtype=types.int32 if a.dtype.kind in "iu" else types.fp32)
            for a in case.inputs.values()
        ]
        prog.add_function(case.name, mb.function(input_specs=specs, opset_version=ct.target.iOS18)(case.build))
    return save_mil_program(prog, path)


def check_op_case(runner, case: OpCase):
    """Run ``case``'s function with the interpreter ``runner`` and compare every output to ``case.want``."""
    held = {op.type for op in runner.program.functions[case.name].block.operations} - {"const"}
    assert held == case.ops, f"{case.name}: the program holds {sorted(held)}, the case names {sorted(case.ops)}"
    out = runner.predict({k: v.copy() for k, v in case.inputs.items()}, function_name=case.name)
    got = [out[n] for n in runner.describe(case.name)["outputs"]]
    want = case.want(*(v.copy() for v in case.inputs.values()))
    want = list(want) if isinstance(want, tuple) else [want]
    assert len(got) == len(want), f"{case.name}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        w = w.numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        assert g.shape == w.shape, f"{case.name} output {i}: shape {g.shape}, expected {w.shape}"
        np.testing.assert_allclose(g, w, atol=case.atol, rtol=case.rtol, err_msg=f"{case.name} output {i}")


# coremltools/torch.export emit hundreds of deprecation notices per conversion; they are not ours.
CONVERTER_WARNINGS = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
