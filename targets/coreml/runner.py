"""Runner for Core ML packages: real Core ML on macOS, the MIL interpreter (targets/coreml/mil) everywhere else.

The package contract (targets/coreml/__init__.py): `prefill` takes exactly `prefill_chunk` tokens at contiguous
positions plus `logits_row`, and returns the logits of that one row; `decode` takes one token; `verify` (packages
exported with `verify_tokens=N`) takes N tokens and returns every row. All update the shared KV-cache states. A run
of tokens is fed in chunks, the last one padded with token 0 at the following positions: the padded positions are
written to the cache but every later query masks them out (attention reads positions <= its own), and later calls
overwrite them as they reach them. Near the end of the context, where a padded chunk would run past it, the
remaining tokens go through `decode` one by one.

Two ways in, as validation/runner.py defines them:
- `forward_last` (generation, latency): prefill chunks, the last one asking for its last real token's row: one
  head row per chunk, what an app does on a device;
- `forward` (every row: validation's teacher-forced comparison, perplexity, a speculative pair's target): through
  `verify`, N tokens a call, when the package has it, else one `decode` call per token. Every row is the
  package's own computation at its position; none is derived from another call.
Packages exported before prefill took `logits_row` (no `prefill_logits` in the manifest) return every row from
prefill, and `forward` uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...errors import ElmExportError
from . import ROW_INPUT


class CoreMLPackageRunner:
    def __init__(self, package_dir: Path, manifest: dict, threads: int | None = None):
        from .mil import MILError, open_coreml_runner

        self.manifest = manifest
        self.context = int(manifest["context_length"])
        self.chunk = int(manifest["prefill_chunk"])
        self.verify = int(manifest["verify_tokens"]) if "verify" in manifest.get("functions", []) else None
        self.row_prefill = manifest.get("prefill_logits") == "row"
        model_path = Path(package_dir) / manifest["model_file"]
        try:
            self.model = open_coreml_runner(model_path)
        except MILError as e:
            raise ElmExportError(f"{model_path}: {e}") from None
        self.name = type(self.model).__name__
        self.state = self.model.make_state()

    def reset(self) -> None:
        self.state = self.model.make_state()

    def _call(self, function: str, ids: list[int], start: int, row: int | None = None) -> np.ndarray:
        feeds = {"input_ids": np.asarray([ids], dtype=np.int32),
                 "input_pos": np.arange(start, start + len(ids), dtype=np.int32)}
        if row is not None:
            feeds[ROW_INPUT] = np.asarray([row], dtype=np.int32)
        out = self.model.predict(feeds, state=self.state, function_name=function)
        return np.asarray(out["logits"], dtype=np.float32)[0]

    def _feed(self, ids: list[int], start_pos: int, function: str, width: int, row: bool = False) -> Iterator:
        """Each call's rows for `ids` fed through `function` (`width` tokens a call, the last call padded): the
        real tokens' rows, or with `row` the last real token's row only; a single token, or a call whose padding
        would run past the context, goes through decode."""
        if start_pos + len(ids) > self.context:
            raise ElmExportError(f"{start_pos + len(ids)} tokens exceed the package's context of {self.context}")
        pos, i = start_pos, 0
        while i < len(ids):
            n = min(width, len(ids) - i)
            if n == 1 or pos + width > self.context:
                yield self._call("decode", [ids[i]], pos)
                i, pos = i + 1, pos + 1
                continue
            out = self._call(function, ids[i:i + n] + [0] * (width - n), pos, n - 1 if row else None)
            yield out if row else out[:n]
            i, pos = i + n, pos + n

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of every fed position, [T, vocab]."""
        if self.verify is not None:
            calls = self._feed(ids, start_pos, "verify", self.verify)
        elif not self.row_prefill:
            calls = self._feed(ids, start_pos, "prefill", self.chunk)
        else:
            calls = self._feed(ids, start_pos, "decode", 1)
        return np.concatenate(list(calls), axis=0)

    def forward_last(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of the last fed position, [vocab]: prefill returns one row per chunk."""
        if not self.row_prefill:
            return self.forward(ids, start_pos)[-1]
        return list(self._feed(ids, start_pos, "prefill", self.chunk, row=True))[-1][-1]


def open_runner(package_dir: Path, manifest: dict, **options) -> CoreMLPackageRunner:
    return CoreMLPackageRunner(package_dir, manifest, **options)
