#!/usr/bin/env python3
"""Writes the golden files that the Swift tests of ElmKit must reproduce exactly.

Why: the Swift tokenizers, chat templates and sampler are re-implementations, so their only trustworthy oracle
is the reference they copy: the Rust `tokenizers` library (through its Python binding) for ids and decoded text,
`elmexport.chat` for chat prompts, `elmexport.sampling` for sampler draws (both imported from this checkout, not
from whatever elmexport is installed). Nothing here calls Swift; every expected value comes from those references.

What it writes, next to this script:
  bytelevel_bpe/tokenizer.json       byte-level BPE in SmolLM2's layout (Digits + ByteLevel pre-tokenizer)
  bytelevel_bpe/expected.json        ids / decoded text for real text lines, specials, and chat prompts (ChatML)
  sentencepiece_bpe/tokenizer.json   SentencePiece-style BPE in Llama-2's layout (Prepend/Replace, byte fallback)
  sentencepiece_bpe/expected.json    the same cases, with OpenELM-Instruct chat prompts
  sampling/expected.json             SplitMix64 streams and sample_next draws for fixed logits and seeds

Not written here: coreml_engine/ (a real package's recorded Core ML calls) and coreml_pair/ (a speculative pair's)
need exported packages and the MIL interpreter, so make_engine_trace.py and make_pair_trace.py write them by hand;
`--check` checks them for consistency only.

Both tokenizers are *trained* here (no network) on licence texts from /usr/share/common-licenses; the
training is deterministic, which `--check` relies on. `--check` regenerates everything into a temporary
directory and exits 1 if any committed file differs, so a changed reference or script cannot go unnoticed.

Usage:  python ios_demo/Fixtures/make_fixtures.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from elmexport import sampling  # noqa: E402
from elmexport.chat import render_chat  # noqa: E402

sys.path.insert(0, str(HERE))
from make_engine_trace import OUT_DIR as ENGINE_TRACE_DIR, check_trace  # noqa: E402
from make_pair_trace import OUT_DIR as PAIR_TRACE_DIR, check_pair_trace  # noqa: E402

LICENSES = Path("/usr/share/common-licenses")

# The licence files are Debian's base-files copies; their digests pin the corpus so that a different
# text on another machine is reported as such instead of as a mysterious fixture drift.
SOURCES = {
    "GPL-3": "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986",
    "Apache-2.0": "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    "MPL-2.0": "fab3dd6bdab226f1c08630b1dd917e11fcb4ec5e1e020e2c16f83a0a13863e85",
}

TRAIN_FILES = ["GPL-3", "Apache-2.0"]  # all ASCII: every non-ASCII character must use byte fallback
HELD_OUT_FILE = "MPL-2.0"  # never seen in training, so merges are exercised on unfamiliar words

# Hand-written lines for what licence text lacks: non-ASCII (accents, CJK, emoji, combining marks),
# Unicode digits and spaces, contractions, odd whitespace, and literal special-token strings.
EXTRA_LINES = [
    "Café au lait, naïve façade, crème brûlée — déjà vu.",
    "Straße, Ærøskøbing, Łódź, İstanbul, Ångström.",
    "日本語のテキストと中文文本。",
    "한국어 문장도 있습니다.",
    "Emoji: 😀🚀👩\u200d💻 and flags 🇫🇷.",
    "Combining: e\u0301 vs \u00e9, a\u0308 vs \u00e4.",
    "Numbers 1234567890, 3.14159, -42, 1e-9, $1,000.00 and 50%.",
    "Arabic-Indic \u0663\u0664\u0665, superscript x\u00b2, Roman \u216b, full-width \uff11\uff12\uff13.",
    "Contractions: don't, it's, we're, they've, I'm, you'll, he'd, O'Neil's.",
    "Upper-case contractions: DON'T, IT'S, WE'LL.",
    "  two leading spaces",
    "trailing spaces   ",
    "   ",
    "tab\tseparated\tvalues",
    "non\u00a0breaking\u00a0spaces and an ideographic\u3000space",
    "line one\nline two\n\nline four",
    "windows\r\nline ending",
    "Symbols ~ ` ^ | { } # & * + = @ \\ and ... !!! ???",
    "<|im_start|>user\nHello there!<|im_end|>",
    "<|endoftext|>",
    "before<|im_end|>after",
    "<s> starts, </s> ends, <unk> unknown",
    "Hello <s> world",
    "x</s>y",
    "<0x41> is not a byte token when typed as text",
    "Ĝ Ġ ĉ Ċ look like byte-level symbols",
    "▁ is the SentencePiece space",
    "ALLCAPS SHOUTING AND CamelCaseWords and snake_case_words",
    "https://example.invalid/path?query=1&other=2#frag",
    "ﬁ ligature and Ⅳ and ½",
]

# (template override or "default", messages, system_prompt). "default" means the layout's own template;
# None is the base-model format (no template).
CHAT_CASES = [
    ("default", [{"role": "user", "content": "What is the GNU General Public License?"}], None),
    ("default", [
        {"role": "system", "content": "You are a concise legal assistant."},
        {"role": "user", "content": "Summarise section 7 in one sentence."},
    ], None),
    ("default", [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Bonjour, ça va ?"},
        {"role": "assistant", "content": "Très bien, merci !"},
        {"role": "user", "content": "Et toi 😀"},
    ], None),
    ("default", [{"role": "user", "content": "Name one permissive licence."}], "You are a helpful AI assistant."),
    (None, [{"role": "user", "content": "Once upon a time"}, {"role": "user", "content": " there was"}], None),
]


def _read_source(name: str) -> str:
    path = LICENSES / name
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCES[name]:
        sys.exit(
            f"make_fixtures: {path} has sha256 {digest}, expected {SOURCES[name]}; the fixtures were made "
            "from a different copy of this licence text, so they cannot be regenerated here."
        )
    return data.decode("utf-8")


def _unique(lines):
    seen, out = set(), []
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def corpus() -> tuple[list[str], list[str]]:
    """(training lines, test texts). Test texts: held-out licence lines, some training lines, extras."""
    train = [line for name in TRAIN_FILES for line in _read_source(name).splitlines()]
    held_out = _unique(_read_source(HELD_OUT_FILE).splitlines())
    gpl = _read_source("GPL-3")
    seen_lines = _unique(gpl.splitlines())[:60]
    paragraphs = [p for p in _read_source("Apache-2.0").split("\n\n") if p.strip()][:3]
    tests = _unique(held_out + seen_lines + paragraphs + EXTRA_LINES)
    return train, tests


# ---------------------------------------------------------------------------------------------------
# Tokenizers


def train_bytelevel(train: list[str]) -> Tokenizer:
    """SmolLM2 layout: Sequence[Digits(individual), ByteLevel(no prefix space)], ByteLevel decoder."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train, trainer)
    return Tokenizer.from_str(tok.to_str())


def train_sentencepiece(train: list[str]) -> Tokenizer:
    """Llama-2 layout: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF>=3..258, then the trained pieces.

    Training uses a Metaspace pre-tokenizer so no merge spans two words; the saved tokenizer then has
    Llama-2's normalizer (Prepend + Replace) and *no* pre-tokenizer, exactly like its tokenizer.json.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(train, trainer)
    trained = json.loads(tok.to_str())

    pieces = [t for t, _ in sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1])]
    specials = ["<unk>", "<s>", "</s>"]
    ordered = specials + [f"<0x{b:02X}>" for b in range(256)] + [p for p in pieces if p not in specials]
    model = trained["model"] | {
        "vocab": {piece: i for i, piece in enumerate(ordered)},
        "unk_token": "<unk>",
        "fuse_unk": True,
        "byte_fallback": True,
    }
    layout = trained | {
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, s in enumerate(specials)
        ],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": None,
        "model": model,
    }
    out = Tokenizer.from_str(json.dumps(layout))
    out.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    out.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    out.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    return Tokenizer.from_str(out.to_str())


def tokenizer_cases(tok: Tokenizer, texts: list[str], template: str) -> dict:
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    specials = []
    for text in [t for t in texts if "<" in t and ">" in t] + ["Plain text gets the post-processor's tokens."]:
        ids = tok.encode(text, add_special_tokens=True).ids
        specials.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    chats = []
    for which, messages, system_prompt in CHAT_CASES:
        name = template if which == "default" else which
        prompt = render_chat(name, messages, system_prompt=system_prompt)
        chats.append({"template": name, "system_prompt": system_prompt, "messages": messages, "prompt": prompt,
                      "ids": tok.encode(prompt, add_special_tokens=True).ids})
    return {
        "about": "ids from the `tokenizers` library for tokenizer.json beside this file; see make_fixtures.py",
        "sources": {name: SOURCES[name] for name in [*TRAIN_FILES, HELD_OUT_FILE]},
        "cases": cases,
        "with_special_tokens": specials,
        "chat": chats,
    }


# ---------------------------------------------------------------------------------------------------
# Sampler


def sampling_cases() -> dict:
    streams = []
    for seed in [0, 1, 42, 2**64 - 1]:
        rng = sampling.SplitMix64(seed)
        u64 = [str(rng.next_u64()) for _ in range(6)]
        rng = sampling.SplitMix64(seed)
        doubles = [rng.next_double() for _ in range(6)]
        streams.append({"seed": str(seed), "u64": u64, "doubles": doubles})

    gen = np.random.default_rng(20240611)
    vectors = {
        "v8": (gen.standard_normal(8) * 2.0).astype(np.float32),
        "v64": (gen.standard_normal(64) * 3.0).astype(np.float32),
        "v1000": (gen.standard_normal(1000) * 4.0).astype(np.float32),
        # Ties and -inf: exercise the lower-id-first rule and zero weights.
        "ties": np.array([1.5, 3.0, 3.0, -1.0, 3.0, 0.0, -np.inf, 1.5, 2.25, 3.0, -0.5, 0.0], dtype=np.float32),
        # A peaked row where top-p keeps very few tokens.
        "peaked": np.array([8.0, 2.0, 1.0, 0.5, 0.25, 0.0, -1.0, -3.0], dtype=np.float32),
    }
    settings = [
        # (vector, temperature, top_k, top_p, penalty, previous tokens, seed)
        ("v8", 0.0, 0, 1.0, 1.0, [], 1),
        ("v64", 0.0, 0, 1.0, 1.3, [3, 5, 7, 7, 11], 1),
        ("ties", 0.0, 0, 1.0, 1.0, [], 1),
        ("v8", 1.0, 0, 1.0, 1.0, [], 7),
        ("v8", 0.7, 0, 1.0, 1.0, [], 8),
        ("v8", 1.5, 3, 1.0, 1.0, [], 9),
        ("v64", 1.0, 0, 1.0, 1.0, [], 10),
        ("v64", 0.8, 10, 1.0, 1.0, [], 11),
        ("v64", 0.8, 0, 0.9, 1.0, [], 12),
        ("v64", 1.2, 20, 0.5, 1.0, [], 13),
        ("v64", 1.0, 1, 1.0, 1.0, [], 14),
        ("v64", 1.0, 0, 1.0, 1.5, [0, 1, 2, 3, 4, 5, 60, 61], 15),
        ("v64", 0.6, 8, 0.95, 1.2, [10, 20, 30], 16),
        ("v1000", 1.0, 0, 1.0, 1.0, [], 17),
        ("v1000", 0.9, 40, 0.9, 1.1, list(range(0, 1000, 37)), 18),
        ("v1000", 1.3, 0, 0.7, 1.0, [], 2**63 + 5),
        ("ties", 1.0, 0, 1.0, 1.0, [], 19),
        ("ties", 1.0, 2, 1.0, 1.0, [], 20),
        ("ties", 0.5, 0, 0.6, 1.0, [], 21),
        ("ties", 2.0, 5, 1.0, 1.4, [1, 5, 6, 10], 22),
        ("peaked", 1.0, 0, 0.9, 1.0, [], 23),
        ("peaked", 1.0, 0, 0.999, 1.0, [], 24),
        ("peaked", 3.0, 4, 1.0, 1.0, [], 25),
    ]
    cases = []
    for name, temperature, top_k, top_p, penalty, previous, seed in settings:
        logits = vectors[name]
        rng = sampling.SplitMix64(seed)
        draws = [
            sampling.sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                 repetition_penalty=penalty, previous_tokens=previous, rng=rng)
            for _ in range(24)
        ]
        cases.append({
            "logits": name, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "repetition_penalty": penalty, "previous_tokens": previous, "seed": str(seed), "draws": draws,
        })
    return {
        "about": "outputs of elmexport/sampling.py; logits are float32 values written as exact decimals; "
                 "seeds and u64 values are decimal strings because they exceed 2**53",
        "logits": {name: [float(v) for v in vec] for name, vec in vectors.items()},
        "splitmix64": streams,
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------
# Output


def _dumps(obj) -> str:
    """JSON with one list element per line at the top levels, so diffs of a fixture stay readable."""

    def compact(value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def block(value, indent):
        pad = " " * indent
        if isinstance(value, dict) and indent < 2:
            items = [f'{pad} {json.dumps(k)}: {block(v, indent + 1).lstrip()}' for k, v in value.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and value and isinstance(value[0], (dict, list)) and indent < 2:
            items = [pad + "  " + compact(v) for v in value]
            return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return pad + compact(value)

    return block(obj, 0) + "\n"


def _json_with_neg_inf(obj):
    """-inf is not JSON; the ties vector spells it as null and the Swift loader maps null to -infinity."""
    if isinstance(obj, float) and obj == float("-inf"):
        return None
    if isinstance(obj, dict):
        return {k: _json_with_neg_inf(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_with_neg_inf(v) for v in obj]
    return obj


def write_all(out: Path) -> list[Path]:
    train, tests = corpus()
    written = []

    def put(rel: str, text: str):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    bytelevel = train_bytelevel(train)
    put("bytelevel_bpe/tokenizer.json", bytelevel.to_str(pretty=True) + "\n")
    put("bytelevel_bpe/expected.json", _dumps(tokenizer_cases(bytelevel, tests, "chatml")))

    sentencepiece = train_sentencepiece(train)
    put("sentencepiece_bpe/tokenizer.json", sentencepiece.to_str(pretty=True) + "\n")
    put("sentencepiece_bpe/expected.json", _dumps(tokenizer_cases(sentencepiece, tests, "openelm")))

    put("sampling/expected.json", _dumps(_json_with_neg_inf(sampling_cases())))
    return written


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        fresh = {p.relative_to(fresh_root) for p in write_all(fresh_root)}
        # The Core ML traces need exported packages to regenerate (make_engine_trace.py, make_pair_trace.py, by
        # hand); here they are only checked for consistency with the current chat templates, the package contract
        # and the greedy chain of their recorded rows.
        traces = (ENGINE_TRACE_DIR, PAIR_TRACE_DIR)
        committed = {p.relative_to(HERE) for p in HERE.rglob("*.json") if not set(traces) & set(p.parents)}
        problems = [f"coreml_engine: {problem}" for problem in check_trace(ENGINE_TRACE_DIR)]
        problems += [f"coreml_pair: {problem}" for problem in check_pair_trace(PAIR_TRACE_DIR)]
        for rel in sorted(fresh | committed):
            if rel not in committed:
                problems.append(f"missing: {rel}")
            elif rel not in fresh:
                problems.append(f"not produced by this script: {rel}")
            else:
                old = (HERE / rel).read_text(encoding="utf-8")
                new = (fresh_root / rel).read_text(encoding="utf-8")
                if old != new:
                    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), str(rel), "regenerated",
                                                     lineterm="", n=0))
                    problems.append(f"differs: {rel}\n" + "\n".join(diff[:12]))
    if problems:
        print("make_fixtures --check: fixtures are out of date:\n" + "\n".join(problems), file=sys.stderr)
        print("regenerate with: python ios_demo/Fixtures/make_fixtures.py", file=sys.stderr)
        return 1
    print(f"make_fixtures --check: {len(fresh)} fixture files up to date, Core ML engine and pair traces consistent")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare, exit 1 on drift")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    for path in write_all(HERE):
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
