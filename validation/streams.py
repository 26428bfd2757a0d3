"""The two ways every check feeds a runner: teacher-forced (a prefill, then the text's next tokens one per call)
and greedy (a prefill, then the runner's own argmax one per call).

Teacher forcing gives every stage the same inputs, so their logits can be compared step by step; greedy shows
where generation first diverges. Both reset the runner first, so each run starts from an empty cache.
"""

from __future__ import annotations

import numpy as np

from .runner import last_logits


def teacher_forced_steps(runner, ids: list[int], prefill: int) -> list[np.ndarray]:
    """Logits of one prefill call over ids[:prefill], then of one call per remaining token: [T_i, vocab] each."""
    runner.reset()
    steps = [runner.forward(ids[:prefill], 0)]
    steps += [runner.forward([token], prefill + i) for i, token in enumerate(ids[prefill:])]
    return steps


def teacher_forced(runner, ids: list[int], prefill: int) -> np.ndarray:
    """The same, concatenated: logits for every position of ids, [len(ids), vocab]."""
    return np.concatenate(teacher_forced_steps(runner, ids, prefill), axis=0)


def greedy(runner, prompt: list[int], n: int) -> list[int]:
    """n tokens, each the argmax after the prompt and the tokens before it (no stop token)."""
    return greedy_with_logits(runner, prompt, n)[0]


def greedy_with_logits(runner, prompt: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    """The same, with the logits row each token was chosen from (to tell a divergence at a tie from a real one)."""
    runner.reset()
    logits, out, rows = last_logits(runner, prompt, 0), [], []
    for step in range(n):
        rows.append(np.asarray(logits).reshape(-1))
        out.append(int(rows[-1].argmax()))
        if step + 1 < n:
            logits = last_logits(runner, [out[-1]], len(prompt) + step)
    return out, rows
