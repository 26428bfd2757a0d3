"""Hugging Face hub access: local cache first, then download; returns None when neither works (offline boxes)."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One 3-second TCP probe, so offline machines skip the client's minute of retries and its log noise."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=3):
            return True
    except OSError:
        return False


def hub_snapshot(repo: str, patterns: list[str], progress: bool = True) -> tuple[Path | None, str]:
    """Return (local dir, how it was found) from the HF cache, else from a download; (None, reason) if neither."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True)), "HF cache"
    except Exception:
        pass
    if not hub_reachable():
        return None, "no network route to the hub"
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns)), "hub download"
    except Exception as e:
        return None, str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def hub_file(repo: str, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    for local_only in (True, False):
        if not local_only and not hub_reachable():
            return None
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=local_only))
        except Exception:
            continue
    return None
