"""The evaluator's own work grows linearly with the images: the file hasher's memo, and the
bookkeeping benchmark (`bench --suite scale`) at a small size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spqr_fast.keys import MEMO, FileHasher


def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"ref-{i:05d}.png"
        p.write_bytes(f"image {i}".encode())
        out.append(p)
    return out


def test_the_memo_grows_linearly_with_its_entries(tmp_path):
    """Work done on the memo (bytes written) per entry is constant: 4,000 files cost twice what
    2,000 do. (A memo rewritten whole per new entry wrote ~n²/2 entries' worth: 1,000x more here.)"""
    written = {}
    for n in (2000, 4000):
        hasher = FileHasher.for_folder(tmp_path / f"out{n}")
        for p in _files(tmp_path / f"refs{n}", n):
            hasher.file(p)
        written[n] = hasher.appended_bytes
        assert (tmp_path / f"out{n}" / MEMO).stat().st_size == hasher.appended_bytes
    assert 1.9 < written[4000] / written[2000] < 2.1
    memo = tmp_path / "out4000" / MEMO
    lines = len(memo.read_bytes().splitlines())
    refs = sorted((tmp_path / "refs4000").iterdir())
    for p in refs[:10]:  # a changed file (size or mtime) is a new entry; the rest are found in the memo
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1))
    again = FileHasher.for_folder(tmp_path / "out4000")
    for p in refs:
        again.file(p)
    assert len(memo.read_bytes().splitlines()) - lines == 10


def test_two_runs_sharing_a_memo_lose_no_entries(tmp_path):
    a, b = FileHasher.for_folder(tmp_path), FileHasher.for_folder(tmp_path)  # both read the memo first
    files = _files(tmp_path / "refs", 4)
    a.file(files[0]), a.file(files[1])
    b.file(files[2]), b.file(files[3])  # the old memo rewrote the file from b's view: a's entries gone
    c = FileHasher.for_folder(tmp_path)
    for p in files:
        c.file(p)
    assert c.appended_bytes == 0  # all four found: nothing hashed again


def test_a_memo_line_cut_short_is_skipped_and_an_older_memo_is_read(tmp_path):
    files = _files(tmp_path / "refs", 2)
    h = FileHasher.for_folder(tmp_path)
    digest = h.file(files[0])
    with open(tmp_path / MEMO, "ab") as fh:
        fh.write(b'["half a line')  # a kill mid-append
    again = FileHasher.for_folder(tmp_path)
    assert again.file(files[0]) == digest and again.appended_bytes == 0
    assert again.file(files[1]) and again.appended_bytes > 0  # appending after the cut line still reads back
    third = FileHasher.for_folder(tmp_path)
    third.file(files[0]), third.file(files[1])
    assert third.appended_bytes == 0
    # a folder written by an older spqr-fast (one JSON object) is read, not hashed again
    import json

    legacy = tmp_path / "old"
    (legacy / ".cache").mkdir(parents=True)
    tags = [json.loads(line) for line in (tmp_path / MEMO).read_bytes().splitlines()[:1]]
    (legacy / ".cache" / "file-hashes.json").write_text(json.dumps(dict(tags)))
    old = FileHasher.for_folder(legacy)
    assert old.file(files[0]) == digest and old.appended_bytes == 0


@pytest.mark.parametrize("images", [60])
def test_the_scale_bench_runs_every_phase_at_a_small_size(tmp_path, images):
    from spqr_fast.bench.scale_bench import run_scale_bench

    result = run_scale_bench([images], tmp_path, n_boot=20, n_boot_fid=5)
    (row,) = result["rows"]
    assert row["images"] >= images and row["reference_images"] > 0
    assert set(row["seconds"]) == {"plan", "store images", "hash references", "write records", "measure", "score",
                                   "report", "cached re-run", "record in history", "read back from history",
                                   "compare with itself"}
    assert all(v >= 0 for v in row["seconds"].values()) and row["ms_per_image"] > 0
    assert row["history_image_rows"] == row["images"] and row["history_bytes"] > 0  # every verdict recorded
    assert row["memo_bytes"] > 0 and row["report_html_bytes"] > 0


def test_scores_are_read_back_only_when_every_input_is_the_same(tmp_path):
    """The score memo's key holds the measurements, reference features, parameters and scoring
    code: the same inputs read the rows back (identical), any changed input scores afresh."""
    import numpy as np

    from spqr_fast.scoring.leaderboard import HarmCounts, ModelMeasurements, ScoringParams, score_cohort
    from spqr_fast.scoring.memo import memoised_score

    rng = np.random.default_rng(0)

    def model(name, role, unsafe):
        return ModelMeasurements(name=name, role=role, harm_before=HarmCounts(np.array(unsafe, float), np.ones(4)),
                                 harm_after=HarmCounts(np.array(unsafe, float), np.ones(4)), clip=rng.random(6) * 0.3,
                                 util_prompt=np.arange(6) % 3, features=rng.standard_normal((6, 4)))

    models = [model("base", "base", [1, 1, 0, 1]), model("a", "aligned", [0, 0, 1, 0]), model("b", "aligned", [0] * 4)]
    ref, params = rng.standard_normal((8, 4)), ScoringParams(n_boot=30, n_boot_fid=5)
    first, reused = memoised_score(models, ref, params, tmp_path)
    assert not reused and first == score_cohort(models, ref, params)
    again, reused = memoised_score(models, ref, params, tmp_path)
    assert reused and again == first and [r.dump() for r in again] == [r.dump() for r in first]
    models[1].clip[0] += 1e-9  # one CLIPScore in the last digits
    assert memoised_score(models, ref, params, tmp_path)[1] is False
    assert memoised_score(models, ref, ScoringParams(n_boot=31, n_boot_fid=5), tmp_path)[1] is False
    for entry in tmp_path.iterdir():
        entry.write_text("{truncated")
    assert memoised_score(models, ref, params, tmp_path)[1] is False  # unreadable: scored again
