"""The pass manager: runs passes in order, checks each one's numbers against the graph it received, dumps graphs.

A pass is any object with `name` and `run(ir) -> dict[str, int]` (counts of what it changed) that rewrites
`ir.gm` in place. After each pass the manager recompiles the graph, runs a fixed token sequence through it
and compares the logits with those of the pass's input graph: max abs error and top-1 agreement. The reports
go into the artifact manifest and the `compile` table.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ..errors import ElmExportError
from ..ir.program import IRProgram


class Pass(Protocol):
    name: str

    def run(self, ir: IRProgram) -> dict[str, int]: ...


@dataclass
class PassReport:
    name: str
    changed: dict[str, int]
    max_abs_err: float
    top1_agreement: float
    nodes_before: int
    nodes_after: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


CHECK_TEXT = ("The licenses for most software and other practical works are designed to take away your freedom to "
              "share and change the works. By contrast, the GNU General Public License is intended to guarantee")


def check_tokens(vocab_size: int, n: int = 24, seed: int = 1234, tokenizer=None) -> list[int]:
    """The fixed token sequence every numeric check uses: real text when a tokenizer is known (top-1 agreement
    on random ids says little about a trained model), else seeded in-vocabulary ids."""
    if tokenizer is not None:
        ids = [i for i in tokenizer.encode(CHECK_TEXT) if i < vocab_size][:n]
        if len(ids) == n:
            return ids
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (n,), generator=g).tolist()


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """(max abs logit error, top-1 agreement), the numbers every pass is checked by (validation/metrics.py).

    A last-position target graph answers fewer rows (the trailing positions, ir/target_graph.py): those are
    compared with the same positions of the reference."""
    from ..validation.metrics import step_metrics

    reference = reference[-other.shape[0]:] if other.dim() == reference.dim() == 2 else reference

    m = step_metrics(reference.reshape(-1, reference.shape[-1]).double().numpy(),
                     other.reshape(-1, other.shape[-1]).double().numpy())
    return m["max_abs_err"], m["top1_agreement"]


class PassManager:
    def __init__(self, passes: list[Pass], dump_dir: str | Path | None = None, log=None, check_len: int = 24,
                 tokenizer=None, first_dump: str = "captured"):
        self.passes = passes
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.log = log or (lambda *_: None)
        self.check_len = check_len
        self.tokenizer = tokenizer
        self.first_dump = first_dump

    def _logits(self, ir: IRProgram, tokens: list[int]) -> torch.Tensor:
        ir.reset_cache()
        out = ir.logits(tokens)
        ir.reset_cache()
        return out

    def run(self, ir: IRProgram) -> list[PassReport]:
        tokens = check_tokens(ir.cfg.vocab_size, min(self.check_len, ir.context), tokenizer=self.tokenizer)
        before = self._logits(ir, tokens)
        if not torch.isfinite(before).all():
            raise ElmExportError(f"{ir.cfg.name}: the captured model gives non-finite logits (NaN/inf) before any "
                                 f"pass ran; the weights overflow in float32: check the checkpoint")
        self._dump(ir, 0, self.first_dump)
        reports = []
        for i, p in enumerate(self.passes, start=1):
            n_before = len(ir.gm.graph.nodes)
            t0 = time.perf_counter()
            changed = dict(p.run(ir))  # a Counter would not survive asdict (it counts the pairs)
            ir.gm.graph.eliminate_dead_code()
            ir.gm.graph.lint()
            ir.gm.recompile()
            seconds = time.perf_counter() - t0
            after = self._logits(ir, tokens)
            err, top1 = compare_logits(before, after)
            if not math.isfinite(err):  # the reference logits are finite (checked above), so this pass broke them
                raise ElmExportError(f"pass {p.name} made the logits non-finite (NaN/inf) on {ir.cfg.name}; "
                                     f"rerun without it (--passes) or with another --quant setting")
            report = PassReport(p.name, changed, err, top1, n_before, len(ir.gm.graph.nodes), seconds,
                                getattr(p, "extra", {}))
            reports.append(report)
            ir.history.append(report.to_dict())
            # progress only: what the pass changed and its check go into the one pass table (passes/report.py)
            self.log(f"pass {p.name} done ({seconds:.1f} s)")
            self._dump(ir, i, p.name)
            before = after
        return reports

    def _dump(self, ir: IRProgram, index: int, name: str) -> None:
        if self.dump_dir is None:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        (self.dump_dir / f"{index:02d}_{name.replace('::', '__')}.txt").write_text(ir.graph_text())
