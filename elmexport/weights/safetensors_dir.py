"""Read an HF model directory: config.json + model.safetensors, or shards listed in model.safetensors.index.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import WeightsError
from ..raw_fields import Fields, first_line, shown, type_name


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
                raw = json.loads(index.read_bytes())
            except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise WeightsError(f"{index}: not valid JSON ({_short(e)}); re-download it") from None
            return shards_from_index(raw, index, self.path)
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


def shards_from_index(raw, index: Path, folder: Path) -> list[Path]:
    """The shard files a parsed `model.safetensors.index.json` lists, each checked to lie inside `folder`.

    Why the containment check: an index is a downloaded file, and a shard named `../../home/me/.ssh/id_rsa` or
    `/etc/passwd` must not make us open files outside the checkpoint. The check is on the name, not the resolved
    path: in the HF cache every shard is a symlink into a blobs folder outside the snapshot.
    """
    fields = Fields(raw, str(index), WeightsError, what="a safetensors index (a JSON object with a 'weight_map')")
    weight_map = fields.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{index}: 'weight_map' must be a non-empty mapping of tensor name -> shard file, "
                           f"got {type_name(weight_map)}; re-download the index")
    files = set()
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard.strip() or "\x00" in shard:
            raise WeightsError(f"{index}: tensor {shown(tensor)} maps to {type_name(shard)} {shown(shard)}, "
                               f"not a shard file name; re-download the index")
        path = folder / shard
        if Path(shard).is_absolute() or ".." in Path(shard).parts:  # lexical: HF cache shards are symlinks out
            raise WeightsError(f"{index}: shard {shown(shard)} (for {shown(tensor)}) points outside {folder}; "
                               f"shard names must be plain file names inside the checkpoint folder")
        files.add(path)
    absent = sorted(f.name for f in files if not f.is_file())
    if absent:
        raise WeightsError(f"{index} lists shard {absent[0]!r}, which is not in {folder}; download all shards")
    return sorted(files)


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
    return first_line(e, 200)
