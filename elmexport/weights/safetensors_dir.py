"""Read an HF model directory: config.json + model.safetensors, or shards listed in model.safetensors.index.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import WeightsError


class SafetensorsDir:
    """Lazy view of every tensor in a directory's safetensors file(s); opening validates each file's header."""

    def __init__(self, path: Path):
        self.path = Path(path)
        files = self._files()
        self._where: dict[str, Path] = {}
        self._handles = {}
        for f in files:
            try:
                handle = safe_open(str(f), framework="pt")
                keys = list(handle.keys())
            except (SafetensorError, OSError, ValueError) as e:
                raise WeightsError(f"{f}: not a readable safetensors file ({_short(e)}); it may be truncated, re-download it") from None
            _check_complete(f, handle, keys)
            self._handles[f] = handle
            for k in keys:
                self._where[k] = f

    def _files(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise WeightsError(f"{index}: not a valid safetensors index ({e})") from None
            files = sorted({self.path / name for name in weight_map.values()})
            absent = [f.name for f in files if not f.exists()]
            if absent:
                raise WeightsError(f"{index} lists shard {absent[0]!r}, which is not in {self.path}; download all shards")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            hint = " (found PyTorch .bin files: convert them to safetensors)" if list(self.path.glob("*.bin")) else ""
            raise WeightsError(f"{self.path}: no .safetensors weights{hint}")
        return files

    def names(self) -> set[str]:
        return set(self._where)

    def read(self, name: str) -> torch.Tensor:
        try:
            return self._handles[self._where[name]].get_tensor(name)
        except SafetensorError as e:
            raise WeightsError(f"{self._where[name]}: cannot read tensor {name!r} ({_short(e)}); the file is damaged") from None


def _check_complete(path: Path, handle, keys: list[str]) -> None:
    """safe_open reads only the header; compare the byte ranges it promises with the file's real size."""
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        try:
            header = json.loads(fh.read(header_len))
        except json.JSONDecodeError:
            raise WeightsError(f"{path}: corrupt safetensors header; re-download the file") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    if size < 8 + header_len + end:
        raise WeightsError(
            f"{path}: truncated safetensors file ({size} bytes, header promises {8 + header_len + end}); re-download it"
        )


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
