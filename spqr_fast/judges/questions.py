"""TIFA-style question sets: loading, validation, and the pure scoring rules.

Schema (TIFA's): a JSON list (or JSONL) of `{"id", "caption", "question", "choices", "answer",
"element_type", "element"}`; `id` names the caption the question belongs to. Yes/no questions
have choices ["yes", "no"]; others are multiple choice.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

REQUIRED = ("id", "caption", "question", "choices", "answer", "element_type", "element")


@dataclass(frozen=True)
class Question:
    index: int
    caption_id: str
    caption: str
    question: str
    choices: tuple[str, ...]
    answer: str
    element_type: str
    element: str

    @property
    def is_yes_no(self) -> bool:
        return set(c.lower() for c in self.choices) == {"yes", "no"}


def load_questions(path: str | Path) -> tuple[list[Question], str]:
    """(questions, sha256 of the file). A malformed entry is reported with its index and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"question file '{path}' not found — give a TIFA-style JSON or JSONL file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"question file '{path}' is not UTF-8 text (byte {err.start}) — save it as UTF-8") from None
    try:
        rows = [json.loads(x) for x in text.splitlines() if x.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"question file '{path}': invalid JSON at line {err.lineno} — fix the file") from None
    if not isinstance(rows, list) or not rows:
        raise InputError(f"question file '{path}': expected a non-empty list of question objects")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"question file '{path}': entry {i} is not an object")
        for key in REQUIRED:
            if key not in row:
                raise InputError(f"question file '{path}': entry {i} lacks field '{key}'")
        choices = row["choices"]
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise InputError(f"question file '{path}': entry {i} field 'choices' must list at least two answers")
        if row["answer"] not in choices:
            raise InputError(f"question file '{path}': entry {i} field 'answer' ({row['answer']!r}) is not one of its choices")
        for key in ("question", "caption"):
            if not isinstance(row[key], str) or not row[key].strip():
                raise InputError(f"question file '{path}': entry {i} field '{key}' is empty")
        out.append(Question(i, str(row["id"]), row["caption"].strip(), row["question"].strip(),
                            tuple(c.strip() for c in choices), row["answer"].strip(), str(row["element_type"]),
                            str(row["element"])))
    return out, hashlib.sha256(text.encode()).hexdigest()


def by_caption(questions: list[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        groups[q.caption].append(q)
    return dict(groups)


def yes_probability(p_yes_token: float, p_no_token: float) -> float:
    """p = P(yes) / (P(yes) + P(no)) on the first answer token."""
    denom = p_yes_token + p_no_token
    return 0.5 if denom <= 0 else p_yes_token / denom


def grade(question: Question, *, p_yes: float | None = None, choice_loglik: list[float] | None = None) -> dict:
    """One answer graded: hard correctness, soft score, the predicted choice."""
    if question.is_yes_no:
        assert p_yes is not None
        predicted = "yes" if p_yes > 0.5 else "no"
        expected_yes = question.answer.lower() == "yes"
        soft = p_yes if expected_yes else 1.0 - p_yes
        return {"predicted": predicted, "correct": predicted == question.answer.lower(), "soft": float(soft),
                "p_yes": float(p_yes)}
    assert choice_loglik is not None and len(choice_loglik) == len(question.choices)
    ll = np.asarray(choice_loglik, dtype=float)
    probs = np.exp(ll - ll.max())
    probs /= probs.sum()
    best = int(np.argmax(ll))
    right = question.choices.index(question.answer)
    return {"predicted": question.choices[best], "correct": best == right, "soft": float(probs[right]),
            "choice_loglik": [float(x) for x in ll]}


def summarise(graded: list[tuple[Question, dict]]) -> dict:
    """Per-image summary: accuracy (mean over its questions), soft mean, per-category counts."""
    if not graded:
        return {"accuracy": None, "soft": None, "n": 0, "categories": {}}
    cats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for q, g in graded:
        cats[q.element_type][0] += int(g["correct"])
        cats[q.element_type][1] += 1
    return {"accuracy": float(np.mean([g["correct"] for _, g in graded])),
            "soft": float(np.mean([g["soft"] for _, g in graded])), "n": len(graded),
            "categories": {c: {"correct": v[0], "n": v[1]} for c, v in sorted(cats.items())}}


def pooled_categories(summaries: list[dict]) -> dict[str, dict]:
    """Per category: accuracy pooled over all questions of that category."""
    tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in summaries:
        for c, v in s["categories"].items():
            tot[c][0] += v["correct"]
            tot[c][1] += v["n"]
    return {c: {"accuracy": v[0] / v[1], "n": v[1]} for c, v in sorted(tot.items()) if v[1]}


def mismatched_pairs(captions: list[str]) -> dict[str, str]:
    """For the yes-bias control: each caption's questions are asked of the next caption's image."""
    order = sorted(captions)
    return {c: order[(i + 1) % len(order)] for i, c in enumerate(order)} if len(order) > 1 else {}
