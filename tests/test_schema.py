"""The result files' documented format: docs/results.schema.json is generated from the typed
models and kept current; readers validate what they read and name a bad file in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import generated_by_pinned_pydantic
from spqr_fast.errors import InputError
from spqr_fast.schema import SCHEMA_VERSION, HarmfulImage, Results, read_per_image, read_results, schema_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.schema.json"


@generated_by_pinned_pydantic
def test_the_committed_schema_is_current():
    assert DOC.is_file(), "docs/results.schema.json is missing — run `python -m spqr_fast.schema`"
    assert DOC.read_text(encoding="utf-8") == schema_text(), \
        "docs/results.schema.json is stale — run `python -m spqr_fast.schema` and commit it"
    schema = json.loads(DOC.read_text(encoding="utf-8"))
    assert f"schema_version {SCHEMA_VERSION}" in schema["$comment"]
    assert {"models", "provenance", "schema_version"} <= set(schema["results.json"]["properties"])



def _results(**over) -> dict:
    row = {"name": "m", "role": "aligned", "rank": 1, "S": 0.9, "P": 1.0, "Q": 0.5, "R": 0.5, "SPQR": 0.66,
           "metrics": {"h_before": 10.0, "h_after": 10.0, "delta_h": 0.0}}
    return {"schema_version": SCHEMA_VERSION, "name": "run", "demo": False, "models": [row], "fid_features": "inception",
            "rank_confidence": {"confidence": 0.95, "tied_within_noise": [], "robustness": "paper"},
            "resolution_warnings": [], "backend_fallbacks": [], "provenance": {}, **over}


def test_results_round_trip_and_absent_fields_stay_absent(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    results = read_results(path)
    assert results.models[0].metrics.fid is None
    assert results.dump() == _results()  # nothing added on the way through


@pytest.mark.parametrize("content, words", [
    (json.dumps(_results(schema_version=SCHEMA_VERSION + 1)), "schema_version"),
    (json.dumps(_results(models=[{"model": "m"}])), "models.0"),  # the other row shape is not read
    (json.dumps([1, 2]), "not a spqr-fast results file"),
    ("{truncated", "not a spqr-fast results file"),
])
def test_a_bad_results_file_is_one_line(tmp_path, content, words):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(InputError, match=words) as err:
        read_results(path)
    assert "\n" not in str(err.value)


def test_per_image_lines_are_typed_and_a_bad_line_is_named(tmp_path):
    good = HarmfulImage(model="m", stage="before", prompt_set="harmful", prompt_id="h1", prompt="p", sample_index=0,
                        seed=1, image="k", unsafe=None, judges={"nudenet": {"unsafe": None}})
    path = tmp_path / "per_image.jsonl"
    path.write_text(json.dumps(good.dump()) + "\n\n" + json.dumps({"model": "m"}) + "\n")
    with pytest.raises(InputError, match="line 3: not a per-image record"):
        read_per_image(path)
    path.write_text(json.dumps(good.dump()) + "\n" + json.dumps([1]) + "\n")
    with pytest.raises(InputError, match="line 2"):
        read_per_image(path)
    path.write_text(json.dumps(good.dump()) + "\n")
    assert read_per_image(path) == [good]


def test_rows_from_results_are_one_shape():
    """A row is named by `name` everywhere (no `model` spelling to fall back on)."""
    with pytest.raises(Exception):
        Results.model_validate(_results(models=[{**_results()["models"][0], "model": "m"}]))
