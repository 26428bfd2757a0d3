"""Hugging Face hub access: local cache first, then download; on failure, why, in words a user can act on.

Everything goes through huggingface_hub, so its environment (HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN,
HF_HUB_OFFLINE) and the standard proxy variables apply as they do for every other HF tool. The one thing done here
by hand is a 3-second reachability probe, so an offline machine skips the client's minute of retries and log noise;
it probes the proxy when one applies, since a proxy-only network has no direct route to the hub.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse


def _proxy_for(url) -> tuple[str, int] | None:
    """(host, port) of the proxy a client honouring HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY would use for url."""
    if urllib.request.proxy_bypass(url.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    return (parsed.hostname, parsed.port or 80) if parsed.hostname else None


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    target = _proxy_for(url) or (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    try:
        with socket.create_connection(target, timeout=3):
            return True
    except OSError:
        return False


def why_not(error: Exception, repo: str) -> str:
    """A hub failure as one actionable clause (the client's own messages span several lines of HTTP detail)."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(error, GatedRepoError):  # a subclass of RepositoryNotFoundError: first
        return (f"{repo} is gated on the hub: accept its terms on the model page, then log in (`hf auth login`) "
                f"or set HF_TOKEN")
    if isinstance(error, RepositoryNotFoundError):
        return f"{repo} is not on the hub, or is private (log in with `hf auth login` or set HF_TOKEN)"
    if isinstance(error, RevisionNotFoundError):
        return f"{repo} has no such revision on the hub"
    if isinstance(error, EntryNotFoundError):
        return f"{repo} has no such file on the hub"
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


CHECKPOINT_FILES = ["config.json", "*.safetensors", "*.json"]  # weights, config, tokenizer and its config


def hub_snapshot(repo: str, patterns: list[str]) -> tuple[Path | None, str]:
    """Return (local dir, how it was found) from the HF cache, else from a download; (None, reason) if neither."""
    from huggingface_hub import snapshot_download

    return _cache_then_hub(lambda local: Path(snapshot_download(repo, allow_patterns=patterns,
                                                                local_files_only=local)), repo)


def cached_checkpoint(repo: str) -> Path | None:
    """The repo's checkpoint folder in the HF cache (config.json and safetensors present), else None; never
    touches the network, so callers with an offline source of their own can prefer the cache without a probe."""
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(repo, allow_patterns=CHECKPOINT_FILES, local_files_only=True))
    except Exception:  # not cached, or the cache is unreadable: the caller's own source decides
        return None
    return local if (local / "config.json").is_file() and any(local.glob("*.safetensors")) else None


def hub_file(repo: str, filename: str) -> tuple[Path | None, str]:
    """Return (path, how it was found) for one file of a repo; (None, reason) if neither cache nor hub has it."""
    from huggingface_hub import hf_hub_download

    return _cache_then_hub(lambda local: Path(hf_hub_download(repo, filename, local_files_only=local)), repo)


def _cache_then_hub(fetch, repo: str) -> tuple[Path | None, str]:
    try:
        return fetch(True), "HF cache"
    except Exception:  # not cached (or a partial entry): the hub decides
        pass
    if not hub_reachable():
        return None, "no network route to the hub"
    try:
        return fetch(False), "hub download"
    except Exception as e:
        return None, why_not(e, repo)
