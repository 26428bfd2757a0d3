"""Runner for Core ML packages: real Core ML on macOS, the MIL interpreter (targets/coreml/mil) everywhere else.

The package contract (targets/coreml/__init__.py): `prefill` takes exactly `prefill_chunk` tokens at contiguous positions,
`decode` takes one; both update the shared KV-cache states. A prompt is fed in chunks, the last one padded with
token 0 at the following positions: the padded positions are written to the cache but every later query masks
them out (attention reads positions <= its own), and decode overwrites them as it reaches them. Near the end of the
context, where a padded chunk would run past it, the remaining tokens go through `decode` one by one.
A package exported with `verify_tokens=N` also has `verify` (N tokens, a logits row each): a call feeding 2..N
tokens goes through it in one prediction, padded the same way (a speculative pair's target verifies k + 1 tokens).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ElmExportError


class CoreMLPackageRunner:
    def __init__(self, package_dir: Path, manifest: dict, threads: int | None = None):
        from .mil import MILError, open_coreml_runner

        self.manifest = manifest
        self.context = int(manifest["context_length"])
        self.chunk = int(manifest["prefill_chunk"])
        self.verify = int(manifest["verify_tokens"]) if "verify" in manifest.get("functions", []) else None
        model_path = Path(package_dir) / manifest["model_file"]
        try:
            self.model = open_coreml_runner(model_path)
        except MILError as e:
            raise ElmExportError(f"{model_path}: {e}") from None
        self.name = type(self.model).__name__
        self.state = self.model.make_state()

    def reset(self) -> None:
        self.state = self.model.make_state()

    def _call(self, function: str, ids: list[int], start: int) -> np.ndarray:
        feeds = {"input_ids": np.asarray([ids], dtype=np.int32),
                 "input_pos": np.arange(start, start + len(ids), dtype=np.int32)}
        out = self.model.predict(feeds, state=self.state, function_name=function)
        return np.asarray(out["logits"], dtype=np.float32)[0]

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        if start_pos + len(ids) > self.context:
            raise ElmExportError(f"{start_pos + len(ids)} tokens exceed the package's context of {self.context}")
        if self.verify is not None and 2 <= len(ids) <= self.verify and start_pos + self.verify <= self.context:
            return self._call("verify", ids + [0] * (self.verify - len(ids)), start_pos)[:len(ids)]
        rows, pos, i = [], start_pos, 0
        while i < len(ids):
            n = min(self.chunk, len(ids) - i)
            if n == 1 or pos + self.chunk > self.context:
                rows.append(self._call("decode", [ids[i]], pos))
                i, pos = i + 1, pos + 1
                continue
            piece = ids[i:i + n] + [0] * (self.chunk - n)
            rows.append(self._call("prefill", piece, pos)[:n])
            i, pos = i + n, pos + n
        return np.concatenate(rows, axis=0)


def open_runner(package_dir: Path, manifest: dict, **options) -> CoreMLPackageRunner:
    return CoreMLPackageRunner(package_dir, manifest, **options)
