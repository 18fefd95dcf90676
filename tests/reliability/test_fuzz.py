"""Malformed inputs, each given as a user would: one line on stderr naming the problem, exit 2,
no traceback, and a finished run in the same output folder left byte for byte as it was."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from conftest import run_cli, snapshot

PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
                        "53de0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082")


@dataclass
class Ctx:
    write_config: Callable
    config: Path  # the complete run's config
    out: Path  # the complete run's folder: every case that takes --out writes there
    tmp: Path  # a scratch folder of the case
    project: Path  # the demo project's folder

    def cfg(self, edit) -> Path:
        return self.write_config(f"fuzz-{self.tmp.name}", edit)

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p

    def eval(self, config: Path | str) -> list[str]:
        return ["eval", str(config), "--out", str(self.out)]


def _set(path: str, value):
    def edit(cfg):
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value
    return edit


_DELETE = object()


def _dataset(ctx: Ctx, meta: bytes | str, images: dict[str, bytes] | None = None) -> Path:
    folder = ctx.tmp / "dataset"
    for name, data in (images or {"a.png": PNG_1PX}).items():
        ctx.file(f"dataset/{name}", data)
    ctx.file("dataset/metadata.jsonl", meta)
    return folder


def _with_dataset(ctx: Ctx, folder: Path) -> list[str]:
    return ctx.eval(ctx.cfg(_set("models.0.bft.dataset", str(folder))))


def _with_prompts(ctx: Ctx, path: Path, which: str = "harmful") -> list[str]:
    return ctx.eval(ctx.cfg(lambda c: c["prompts"][which].update(path=str(path), limit=None)))


CASES: dict[str, tuple[Callable[[Ctx], list[str]], str]] = {
    # the config file itself
    "config-missing": (lambda c: c.eval(c.tmp / "nope.yaml"), "not found"),
    "config-is-a-folder": (lambda c: c.eval(c.project), "is a folder"),
    "config-binary": (lambda c: c.eval(c.file("bin.yaml", os.urandom(64) + b"\xff\xfe")), "not UTF-8"),
    "config-nul-bytes": (lambda c: c.eval(c.file("nul.yaml", b"name: a\x00b\n")), "not valid YAML"),
    "config-empty": (lambda c: c.eval(c.file("empty.yaml", "")), "top level must be a mapping"),
    "config-a-list": (lambda c: c.eval(c.file("list.yaml", "- a\n- b\n")), "top level must be a mapping"),
    "config-bad-yaml": (lambda c: c.eval(c.file("bad.yaml", "name: [unclosed\n")), "not valid YAML"),
    "config-unknown-key": (lambda c: c.eval(c.cfg(_set("colour", "red"))), "unknown key 'colour'"),
    "config-unknown-nested-key": (lambda c: c.eval(c.cfg(_set("generation.stepz", 3))), "unknown key 'generation.stepz'"),
    "config-wrong-type": (lambda c: c.eval(c.cfg(_set("generation.steps", "many"))), "generation.steps"),
    "config-negative-steps": (lambda c: c.eval(c.cfg(_set("generation.steps", -1))), "generation.steps"),
    "config-odd-size": (lambda c: c.eval(c.cfg(_set("generation.height", 33))), "generation.height"),
    "config-no-models": (lambda c: c.eval(c.cfg(_set("models", _DELETE))), "missing required key 'models'"),
    "config-empty-models": (lambda c: c.eval(c.cfg(_set("models", []))), "models"),
    "config-duplicate-names": (lambda c: c.eval(c.cfg(_set("models.1.name", "base"))), "repeated: base"),
    "config-bft-and-after-bft": (lambda c: c.eval(c.cfg(_set("models.1.after_bft", {"lora": "x"}))), "not both"),
    "config-hostile-model-name": (lambda c: c.eval(c.cfg(_set("models.1.name", "uce<img src=x onerror=alert(1)>"))),
                                  "model names are"),
    "config-two-bases": (lambda c: c.eval(c.cfg(_set("models.1.role", "base"))), "at most one model"),
    "config-model-path-missing": (lambda c: c.eval(c.cfg(_set("models.0.model.path", "models/nope"))), "does not exist"),
    "config-harmful-missing": (lambda c: c.eval(c.cfg(_set("prompts.harmful.path", "prompts/nope.csv"))), "does not exist"),
    "config-reference-missing": (lambda c: c.eval(c.cfg(_set("prompts.reference_images", "nope"))), "does not exist"),
    "config-tifa-without-vqa": (lambda c: c.eval(c.cfg(lambda d: (d["judges"].pop("vqa"), d["scoring"].update(
        prompt_adherence="tifa")))), "no judges.vqa"),
    "config-epsilon-range": (lambda c: c.eval(c.cfg(_set("scoring.epsilon", 0.7))), "scoring.epsilon"),
    "config-two-fid-sources": (lambda c: c.eval(c.cfg(_set("judges.inception.random_init_seed", 1))), "exactly one"),
    "config-no-safety-judge": (lambda c: c.eval(c.cfg(_set("judges.concept_detector", None))), "no safety judge"),
    "config-threshold-range": (lambda c: c.eval(c.cfg(_set("judges.concept_detector.threshold", 5))), "threshold"),
    "config-clip-is-another-model": (lambda c: c.eval(c.cfg(_set("judges.clip.path", "judges/vqa"))), "not CLIP"),
    # prompt files
    "prompts-binary-csv": (lambda c: _with_prompts(c, c.file("p.csv", b"prompt\n\xff\xfe\x00\x81" * 20)), "not UTF-8"),
    "prompts-binary-txt": (lambda c: _with_prompts(c, c.file("p.txt", b"\x80\x81\x82"), "utility"), "not UTF-8"),
    "prompts-csv-no-prompt-column": (lambda c: _with_prompts(c, c.file("p.csv", "Original,Spanish\nhi,hola\nno,no\n")),
                                     "set 'prompt_column'"),
    "prompts-jsonl-bad-line": (lambda c: _with_prompts(c, c.file("p.jsonl", '{"prompt": "a"}\n{nope\n')), "line 2"),
    "prompts-json-not-a-list": (lambda c: _with_prompts(c, c.file("p.json", '{"prompt": "a"}')), "neither a list"),
    "prompts-unknown-extension": (lambda c: _with_prompts(c, c.file("p.docx", "a")), "unknown extension"),
    "prompts-a-folder": (lambda c: _with_prompts(c, c.tmp), "is a folder"),
    "prompts-empty": (lambda c: _with_prompts(c, c.file("p.txt", "\n\n")), "holds no prompts"),
    "reference-one-image": (lambda c: c.eval(c.cfg(_set("prompts.reference_images", str(
        c.file("ref/a.png", PNG_1PX).parent)))), "at least 2"),
    "questions-not-utf8": (lambda c: c.eval(c.cfg(_set("judges.vqa.questions", str(c.file("q.json", b"[\xff]"))))),
                           "not UTF-8"),
    "questions-bad-json": (lambda c: c.eval(c.cfg(_set("judges.vqa.questions", str(c.file("q.json", "[{"))))),
                           "invalid JSON"),
    # BFT datasets
    "bft-dataset-is-a-file": (lambda c: _with_dataset(c, c.file("d.png", PNG_1PX)), "is a file"),
    "bft-metadata-not-utf8": (lambda c: _with_dataset(c, _dataset(c, b'{"file_name": "a.png", "text": "\xff"}')),
                              "not UTF-8"),
    "bft-metadata-escapes-folder": (lambda c: _with_dataset(c, _dataset(
        c, json.dumps({"file_name": "../../../../etc/passwd", "text": "x"}))), "outside the dataset folder"),
    "bft-metadata-absolute-path": (lambda c: _with_dataset(c, _dataset(
        c, json.dumps({"file_name": "/etc/hostname", "text": "x"}))), "outside the dataset folder"),
    "bft-corrupt-image": (lambda c: _with_dataset(c, _dataset(c, json.dumps({"file_name": "a.png", "text": "x"}),
                                                              {"a.png": b"not a png"})), "unreadable images"),
    # weights files
    "model-pickle-with-namespace": (lambda c: c.eval(c.cfg(_set("models.1.model.path", str(_namespace_pickle(c))))),
                                    "unpickling can run any code"),
    "model-corrupt-safetensors": (lambda c: c.eval(c.cfg(_set("models.1.model.path", str(
        c.file("u.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"))))), "weights file"),
    "model-folder-without-index": (lambda c: c.eval(c.cfg(_set("models.0.model.path", str(c.tmp)))),
                                   "without model_index.json"),
    # outputs and other commands
    "out-is-a-file": (lambda c: ["eval", str(c.config), "--out", str(c.file("out.txt", "x"))], "is a file"),
    "shard-out-of-range": (lambda c: c.eval(c.config) + ["--shard", "4/4"], "0 ≤ i < n"),
    "merge-not-a-shard": (lambda c: ["report", "--merge", str(c.tmp), "--out", str(c.out)], "not a shard output"),
    "merge-truncated-manifest": (lambda c: ["report", "--merge", str(c.file("s/shard.json", '{"shard": 0,').parent),
                                            "--out", str(c.out)], "truncated or malformed"),
    "score-missing-columns": (lambda c: ["score", str(c.file("m.csv", "model,h_before\nA,1\n"))], "missing column"),
    "score-not-utf8": (lambda c: ["score", str(c.file("m.csv", b"\xff\xfe"))], "metrics file"),
    "finetune-dataset-is-a-file": (lambda c: ["finetune", "--model", str(c.project / "models" / "base"), "--dataset",
                                              str(c.file("d.png", PNG_1PX)), "--profile", "lite", "--out",
                                              str(c.tmp / "ft")], "is a file"),
    "generate-prompts-binary": (lambda c: ["generate", "--model", str(c.project / "models" / "base"), "--prompts",
                                           str(c.file("p.csv", b"\xff\xfe\x00")), "--out", str(c.tmp / "g")],
                                "not UTF-8"),
}


def _namespace_pickle(ctx: Ctx) -> Path:
    """A UNet state dict saved with its training arguments beside it, as erasure methods release them."""
    import argparse

    import torch

    path = ctx.tmp / "esd-unet.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-5)}, path)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_gives_one_line_and_exit_2(case, complete_run, write_config, demo_project, tmp_path):
    config, out = complete_run
    before = snapshot(out)
    build, expected = CASES[case]
    args = build(Ctx(write_config, config, out, tmp_path, demo_project.parent))
    proc = run_cli(*args)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert len(errors[0]) < 400, errors[0]  # one readable line, not a dump of the config
    assert snapshot(out) == before, "an earlier complete run was changed"


def test_the_table_is_as_large_as_promised():
    assert len(CASES) >= 45
