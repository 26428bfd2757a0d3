"""The iOS demo's device report (ios_demo/Schemas/device_report.schema.json) beside the host's numbers, and the
correctness check it makes possible.

Speed on a phone says nothing if the phone computed something else. Since schema 2 the app records the token ids
of the chat prompt it built and the greedy tokens its Core ML engine produced from a fresh state; the host replays
the same prompt on the package's own runtime (the MIL interpreter on Linux) and the two must agree token for
token: the prompt (same template, same tokenizer) and every greedy token the device produced.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ElmExportError

DEVICE_REQUIRED = ("schema_version", "device", "package", "summary")


def load_device_report(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ElmExportError(f"--device-report {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ElmExportError(f"--device-report {path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("summary", "device")):
        raise ElmExportError(f"--device-report {path}: expected the iOS demo's benchmark JSON (an object with "
                             f"'device' and 'summary' objects; ios_demo/Schemas/device_report.schema.json)")
    missing = [k for k in DEVICE_REQUIRED if k not in data]
    if missing:
        raise ElmExportError(f"--device-report {path}: missing {missing[0]!r}; expected the iOS demo's benchmark "
                             f"JSON (ios_demo/Schemas/device_report.schema.json)")
    greedy = data.get("greedy_check")
    if greedy is not None and not _valid_greedy(greedy):
        raise ElmExportError(f"--device-report {path}: greedy_check must hold 'prompt' (text), 'prompt_ids' and "
                             f"'token_ids' (lists of token ids)")
    s, d = data["summary"], data["device"]
    return {
        "runtime": f"Core ML on {d.get('model', '?')} ({d.get('os_name', '')} {d.get('os_version', '')})".strip(),
        "prefill_tokens_per_s": s.get("prefill_tokens_per_s_median"),
        "decode_tokens_per_s": s.get("decode_tokens_per_s_median"),
        "time_to_first_token_ms": s.get("time_to_first_token_ms_median"),
        "peak_rss_mib": s.get("peak_memory_mb"),
        "load_ms": data.get("load_ms"),
        "compute_units": (data.get("settings") or {}).get("compute_units"),
        "package": data["package"], "app_version": data.get("app_version"), "timestamp": data.get("timestamp"),
        "greedy_check": greedy,
    }


def check_same_package(device: dict, manifest: dict, report_path) -> None:
    """A device report describes one package; putting it beside another's numbers would compare two models."""
    recorded = device.get("package") or {}
    for key in ("name", "target", "context_length"):
        if key in recorded and recorded[key] != manifest.get(key):
            raise ElmExportError(f"--device-report {report_path}: it measured package {recorded.get('name')!r} "
                                 f"({key} {recorded[key]!r}), not this one ({manifest.get(key)!r}); run the app's "
                                 f"benchmark on this package")


def _valid_greedy(g) -> bool:
    def ids(v):
        return isinstance(v, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in v)

    return isinstance(g, dict) and isinstance(g.get("prompt"), str) and ids(g.get("prompt_ids")) \
        and ids(g.get("token_ids"))


def device_greedy_check(package_dir: str | Path, greedy_check: dict) -> dict:
    """A validation check: the host's prompt ids and greedy tokens against the device's."""
    from ..api import load
    from ..chat import render_chat
    from .streams import greedy

    model = load(package_dir)
    device_prompt, device_tokens = greedy_check["prompt_ids"], greedy_check["token_ids"]
    text = render_chat(model.chat_template, [{"role": "user", "content": greedy_check["prompt"]}],
                       model.system_prompt)
    host_prompt = model.tokenizer.encode(text)
    check = {"name": "device_greedy_match", "numeric": True, "value": None, "threshold": len(device_tokens)}
    if host_prompt != device_prompt:
        first = next((i for i, (a, b) in enumerate(zip(host_prompt, device_prompt)) if a != b),
                     min(len(host_prompt), len(device_prompt)))
        return {**check, "passed": False, "detail": f"the device built another prompt: ids differ from position "
                                                    f"{first} (host {len(host_prompt)} ids, device "
                                                    f"{len(device_prompt)}); template or tokenizer differ"}
    host_tokens = greedy(model.runner, host_prompt, len(device_tokens))
    same = next((i for i, (a, b) in enumerate(zip(host_tokens, device_tokens)) if a != b), len(host_tokens))
    return {**check, "value": same, "passed": same == len(device_tokens),
            "detail": f"device greedy tokens match the host's {model.runtime} for {same} of {len(device_tokens)}"}
