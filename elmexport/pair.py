"""Speculative pairs: one folder holding a target package and a draft package for the same runtime.

    PAIR/
      manifest.json                  {"generator": "elmexport", "kind": "speculative-pair", checksums}: what makes
                                     the folder replaceable with --overwrite and nothing else
      pair.json                      k, the two package folder names, the tokenizer check
      target-<model>-<quant>/        the target, exported with every position's logits (it verifies k + 1 tokens
                                     in one call)
      draft-<model>-<quant>/         the draft, exported as usual (it only ever needs the last position's logits)

The draft's token ids go straight into the target, so the pair is refused unless both models have the same
vocabulary size and both tokenizers map every id to the same string with the same special tokens. The folder is
built in a hidden sibling and swapped in only when both packages and the check succeeded (package.py), so a
refused or failed pair leaves whatever was at --out untouched.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import strict_json
from .errors import ElmExportError

PAIR_FILE = "pair.json"
PAIR_KIND = "speculative-pair"
PAIR_TARGETS = ("onnx", "executorch", "coreml")
# The target option that makes its program return a logits row for every fed position.
ALL_ROW_LOGITS = {"onnx": {"logits": "all"}, "executorch": {"all_logits": True},
                  "coreml": {"verify_tokens": None}}  # None: k + 1, filled in by export_pair


class PairError(ElmExportError):
    """A pair that cannot be built or opened; the message names the problem and the fix."""


def check_pair_target(to: str) -> str:
    if to not in PAIR_TARGETS:
        raise PairError(f"--to {to}: not a pair runtime; choose one of {', '.join(PAIR_TARGETS)}")
    return to


def _vocab_and_specials(tokenizer_file: Path) -> tuple[dict[str, int], list[tuple[int, str]]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    specials = sorted((i, t.content) for i, t in tok.get_added_tokens_decoder().items() if t.special)
    return tok.get_vocab(with_added_tokens=True), specials


def tokenizer_check(target_dir: Path, target_manifest: dict, draft_dir: Path, draft_manifest: dict) -> dict:
    """The facts pair.json records; PairError when the draft's ids would not mean the same to the target."""
    t_name, d_name = target_manifest["model"]["name"], draft_manifest["model"]["name"]
    what = f"draft {d_name} and target {t_name}"
    fix = "pick a draft that uses the target's tokenizer"
    t_vocab = target_manifest["model"]["config"]["vocab_size"]
    d_vocab = draft_manifest["model"]["config"]["vocab_size"]
    if t_vocab != d_vocab:
        raise PairError(f"{what} have different vocabularies ({d_vocab} vs {t_vocab} logits); {fix}")
    if not target_manifest.get("tokenizer") or not draft_manifest.get("tokenizer"):
        raise PairError(f"{what}: a package has no tokenizer.json, so the tokenizers cannot be compared; "
                        f"pass --tokenizer PATH")
    t_tokens, t_specials = _vocab_and_specials(target_dir / target_manifest["tokenizer"])
    d_tokens, d_specials = _vocab_and_specials(draft_dir / draft_manifest["tokenizer"])
    if len(t_tokens) != len(d_tokens):
        raise PairError(f"{what} have different tokenizers ({len(d_tokens)} vs {len(t_tokens)} tokens); {fix}")
    if t_tokens != d_tokens:
        token = next(s for s, i in d_tokens.items() if t_tokens.get(s) != i)
        raise PairError(f"{what} have different tokenizers (token {token!r} is id {d_tokens[token]} in the draft, "
                        f"{t_tokens.get(token)} in the target); {fix}")
    ids = ("bos_token_id", "eos_token_ids")
    if t_specials != d_specials or any(target_manifest.get(k) != draft_manifest.get(k) for k in ids):
        raise PairError(f"{what} have different special tokens (BOS/EOS or the tokenizer's special list); {fix}")
    return {"identical": True, "vocab_size": t_vocab, "tokenizer_tokens": len(t_tokens),
            "special_tokens": [content for _, content in t_specials],
            "bos_token_id": target_manifest.get("bos_token_id"), "eos_token_ids": target_manifest.get("eos_token_ids")}


def export_pair(target: str, draft: str, to: str, *, k: int = 4, target_quant: str = "none",
                draft_quant: str = "int4", out: str | Path | None = None, overwrite: bool = False,
                context: int | None = None, random_weights: bool = False, seed: int = 0,
                draft_seed: int | None = None, tokenizer: str | Path | None = None,
                target_weights: str | Path | None = None, draft_weights: str | Path | None = None,
                log: Callable[..., None] | None = None) -> Path:
    """Export `target` (every position's logits) and `draft` for runtime `to` into one pair folder; returns it."""
    from .api import export
    from .destination import estimate_package_bytes
    from .manifest import read_manifest
    from .package import FORMAT_VERSION, checksums, claim_output, write_package
    from .speculative import check_k
    from .targets.registry import target_entry
    from .weights.config_only import config_without_weights
    from .weights.spec import ModelSpec

    log = log or (lambda *a, **kw: None)
    check_pair_target(to)
    check_k(k)
    specs = {role: ModelSpec(model=model, weights=None if weights is None else str(weights),
                             random_weights=random_weights, context=context, tokenizer_mode="optional")
             for role, model, weights in (("target", target, target_weights), ("draft", draft, draft_weights))}
    cfgs = {role: config_without_weights(spec) for role, spec in specs.items()}
    for cfg in cfgs.values():
        cfg.check_context(context)
    if cfgs["target"].vocab_size != cfgs["draft"].vocab_size:  # refused before anything slow
        raise PairError(f"draft {cfgs['draft'].name} and target {cfgs['target'].name} have different vocabularies "
                        f"({cfgs['draft'].vocab_size} vs {cfgs['target'].vocab_size} logits); pick a draft that "
                        f"uses the target's tokenizer")
    pair_context = context or min(cfg.default_context for cfg in cfgs.values())
    if pair_context < k + 1:
        raise PairError(f"--context {pair_context} is shorter than the k + 1 = {k + 1} tokens the target verifies "
                        f"at once; give a larger --context or a smaller --k")
    quants = {"target": target_quant, "draft": draft_quant}
    for quant in quants.values():
        target_entry(to).quant_config(quant)  # a preset the runtime cannot run is refused before any export
    names = {role: f"{role}-{cfgs[role].name}-{quants[role]}" for role in cfgs}
    out = out if out is not None else f"dist/pair-{cfgs['target'].name}-{cfgs['draft'].name}-{to}"
    estimate = sum(estimate_package_bytes(cfg.num_parameters, 16) for cfg in cfgs.values())
    protected = (target_weights, draft_weights, tokenizer)
    t0 = time.perf_counter()
    with claim_output(out, overwrite=overwrite, protected=protected, estimated_bytes=estimate) as out:
        with write_package(out) as tmp:
            manifests = {}
            for role, model, weights, role_seed in (("target", target, target_weights, seed),
                                                    ("draft", draft, draft_weights,
                                                     seed if draft_seed is None else draft_seed)):
                options = dict(ALL_ROW_LOGITS[to]) if role == "target" else {}
                if "verify_tokens" in options:  # Core ML's verify scores the last token and k proposals
                    options["verify_tokens"] = k + 1
                # ExecuTorch's default
                # max_seq_len, min(128, context), already takes the k + 1 <= context tokens in one call
                log(f"pair: exporting the {role} {model or cfgs[role].name} ({quants[role]}) to {to} ...")
                export(model, to, quant=quants[role], out=tmp / names[role], weights=weights,
                       random_weights=random_weights, seed=role_seed, tokenizer=tokenizer, context=pair_context,
                       log=log, **options)
                manifests[role] = read_manifest(tmp / names[role])
            check = tokenizer_check(tmp / names["target"], manifests["target"], tmp / names["draft"],
                                    manifests["draft"])
            pair = {"kind": PAIR_KIND, "format_version": 1, "runtime": to, "k": k, "context_length": pair_context,
                    "target": {"package": names["target"], "model": cfgs["target"].name, "quant": target_quant,
                               "logits": "all"},
                    "draft": {"package": names["draft"], "model": cfgs["draft"].name, "quant": draft_quant},
                    "tokenizer_check": check,
                    "random_weights": bool(random_weights)}
            (tmp / PAIR_FILE).write_text(strict_json.dumps(pair))
            (tmp / "manifest.json").write_text(strict_json.dumps(
                {"generator": "elmexport", "format_version": FORMAT_VERSION, "kind": PAIR_KIND, "pair": PAIR_FILE,
                 "checksums": checksums(tmp)}))
    log(f"wrote pair {out}/ ({time.perf_counter() - t0:.0f} s): {names['target']}, {names['draft']}, k={k}")
    return Path(out)


def is_pair(path: str | Path) -> bool:
    return (Path(path) / PAIR_FILE).is_file()


def read_pair(pair_dir: str | Path) -> dict:
    """pair.json, checked enough that opening the packages it names cannot leave the folder."""
    pair_dir = Path(pair_dir)
    path = pair_dir / PAIR_FILE
    try:
        pair = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise PairError(f"{path}: unreadable ({str(e)[:120]}); re-export the pair with `elmexport pair`") from None
    ok = isinstance(pair, dict) and pair.get("kind") == PAIR_KIND and isinstance(pair.get("k"), int) and \
        not isinstance(pair.get("k"), bool) and pair["k"] >= 1
    for role in ("target", "draft"):
        entry = pair.get(role) if ok else None
        name = entry.get("package") if isinstance(entry, dict) else None
        ok = ok and isinstance(name, str) and name and "/" not in name and "\\" not in name and \
            name not in (".", "..")
    if not ok:
        raise PairError(f"{path}: not a pair manifest (kind, k >= 1, target/draft package names); "
                        f"re-export the pair with `elmexport pair`")
    return pair


@dataclass
class LoadedPair:
    """Both packages of a pair opened on their runtime; generation uses the target's tokenizer and chat template."""

    pair: dict
    target: object  # api.LoadedPackage
    draft: object

    def generate(self, prompt: str, *, max_new_tokens: int = 64, k: int | None = None, chat: bool = True,
                 system: str | None = None, on_text: Callable[[str], None] | None = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 seed: int = 0):
        """Speculative decoding, greedy by default; with temperature > 0 the accept/reject rule samples exactly as
        the target's own sampler would. Returns a SpeculativeResult (tokens, acceptance, tokens per target call)."""
        from .generation import SamplingOptions
        from .speculative import speculative_generate

        tokenizer = self.target.tokenizer
        sampling = SamplingOptions(temperature, top_k, top_p, repetition_penalty, seed)
        return speculative_generate(self.target.runner, self.draft.runner,
                                    self.target.prompt_ids(prompt, chat=chat, system=system), max_new_tokens,
                                    k=k if k is not None else self.pair["k"], eos_ids=tokenizer.eos_token_ids,
                                    tokenizer=tokenizer, on_text=on_text, sampling=sampling)


def load_pair(pair_dir: str | Path, *, threads: int | None = None) -> LoadedPair:
    """Open a pair folder written by `export_pair`; `threads` for both runtimes (None: the runtime's choice)."""
    from .api import load

    pair_dir = Path(pair_dir)
    pair = read_pair(pair_dir)
    # the two sessions take turns on the same cores: idle onnxruntime threads must not spin while the other runs
    target, draft = (load(pair_dir / pair[role]["package"], threads=threads, spinning=False)
                     for role in ("target", "draft"))
    logits = target.package.manifest.get("logits", target.package.manifest.get("onnx", {}).get("logits"))
    if "verify" in target.package.manifest.get("functions", []):  # Core ML: verify returns every row
        logits = "all"
    if logits != "all":
        raise PairError(f"{pair_dir}: the target package returns only the last position's logits, so it cannot "
                        f"verify k tokens in one call; re-export the pair with `elmexport pair`")
    return LoadedPair(pair, target, draft)
