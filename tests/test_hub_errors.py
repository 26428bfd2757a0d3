"""Hub failures reach the user as one line they can act on, through the real huggingface_hub client.

The hub is unreachable here, so a local HTTP server stands in for it (HF_ENDPOINT, which the client honours), and
answers the way the hub does: status 401/403 with the `X-Error-Code` header the client maps to GatedRepoError or
RepositoryNotFoundError. The proxy probe is checked against a listening socket named by HTTPS_PROXY.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from elmexport.weights import hub


class _FakeHub(BaseHTTPRequestHandler):
    """Every request for a repo named `*gated*` is refused as gated, any other as not found."""

    def _refuse(self):
        gated = "gated" in self.path
        self.send_response(403 if gated else 401)
        self.send_header("X-Error-Code", "GatedRepo" if gated else "RepoNotFound")
        self.send_header("X-Error-Message", "Access to this model is restricted." if gated else "Repository not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _elmexport(args, endpoint, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
               NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([sys.executable, "-m", "elmexport", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("repo, expected", [
    ("acme/gated-model", "acme/gated-model is gated on the hub: accept its terms"),
    ("acme/no-such-model", "acme/no-such-model is not on the hub, or is private"),
])
def test_hub_refusals_are_one_actionable_line(fake_hub, tmp_path, repo, expected):
    res = _elmexport(["info", "--model", repo], fake_hub, tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0
    assert expected in res.stderr


def test_the_snapshot_path_gives_the_same_reasons(fake_hub, monkeypatch, tmp_path):
    """In-process, the weights' path (snapshot_download) names the causes as the config's path (hf_hub_download,
    which the CLI test above goes through) does."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake_hub)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub.hub_reachable.cache_clear()
    try:
        path, how = hub.hub_snapshot("acme/gated-model", ["config.json"])
        assert path is None and "is gated on the hub" in how
        path, how = hub.hub_snapshot("acme/other", ["config.json"])
        assert path is None and "is not on the hub, or is private" in how
    finally:
        hub.hub_reachable.cache_clear()


def test_the_reachability_probe_goes_through_a_proxy(monkeypatch):
    """A proxy-only network: the hub's host does not resolve, the proxy listens. The client would go through the
    proxy, so the probe must too; NO_PROXY for the hub's host means a direct probe again."""
    import huggingface_hub.constants

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")
    try:
        hub.hub_reachable.cache_clear()
        assert not hub.hub_reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
        hub.hub_reachable.cache_clear()
        assert hub._proxy_for(urlparse("https://hub.invalid")) == ("127.0.0.1", listener.getsockname()[1])
        assert hub.hub_reachable()
        monkeypatch.setenv("NO_PROXY", "hub.invalid")
        hub.hub_reachable.cache_clear()
        assert not hub.hub_reachable()
    finally:
        hub.hub_reachable.cache_clear()
        listener.close()
