"""The VQA judge: Optimum-exported graphs against torch, TIFA scoring rules, question files."""

import json

import numpy as np
import pytest

from spqr_fast.backends.resolve import BackendResolver
from spqr_fast.config import BackendConfig
from spqr_fast.errors import InputError
from spqr_fast.export.cache import ArtefactCache
from spqr_fast.judges.questions import (Question, grade, load_questions, mismatched_pairs, pooled_categories,
                                        summarise, yes_probability)
from spqr_fast.judges.vqa import VqaJudge
from spqr_fast.keys import FileHasher


@pytest.fixture(scope="module")
def vqa_dir(demo_project):
    return str(demo_project.parent / "judges" / "vqa")


@pytest.fixture(scope="module")
def judges(vqa_dir, tmp_path_factory):
    cache = ArtefactCache(tmp_path_factory.mktemp("vqa-engines"))
    torch_judge = VqaJudge(vqa_dir)
    resolver = BackendResolver(BackendConfig(kind="ort", cache_root=str(cache.root)), FileHasher(None), log=print)
    ort_judge = VqaJudge(vqa_dir, resolver=resolver)
    assert ort_judge.backend_report.chosen == "ort-cpu"
    return torch_judge, ort_judge


def _q(i, question, choices, answer, etype="object"):
    return Question(i, "c0", "a caption", question, tuple(choices), answer, etype, "x")


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_graphs_match_torch_single_and_batched_with_several_lengths(judges, batch):
    ref, ort = judges
    rng = np.random.default_rng(batch)
    images = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(batch)]
    e_ref, e_ort = ref.image_embeddings(images), ort.image_embeddings(images)
    np.testing.assert_allclose(e_ort, e_ref, atol=1e-5)
    for question in ("is it red?", "how many cats are sleeping on the wooden sofa near the window?"):
        ids, mask = ref._tokenize([question] * batch)
        np.testing.assert_allclose(ort.graphs.first_token_logits(e_ref, ids, mask),
                                   ref.graphs.first_token_logits(e_ref, ids, mask), atol=1e-4)
        for answers in (["yes"] * batch, ["a small boat on a calm lake"] * batch):
            a_ids, a_mask = ref._answer_tokens(answers)
            np.testing.assert_allclose(ort.graphs.answer_loglik(e_ref, ids, mask, a_ids, a_mask),
                                       ref.graphs.answer_loglik(e_ref, ids, mask, a_ids, a_mask), atol=1e-4)


@pytest.fixture(scope="module")
def questions_file(demo_project) -> str:
    return str(demo_project.parent / "prompts" / "questions.json")


def test_multiple_choice_picks_the_same_choice_as_torch(judges, questions_file):
    ref, ort = judges
    questions, _ = load_questions(questions_file)
    mc = [q for q in questions if not q.is_yes_no]
    rng = np.random.default_rng(7)
    image = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    a = ref.answer(ref.image_embeddings(image)[0], mc)
    b = ort.answer(ort.image_embeddings(image)[0], mc)
    assert [x["predicted"] for x in a] == [x["predicted"] for x in b]
    assert len({x["predicted"] for x in a}) > 1  # a real choice, not a constant


def test_scoring_rules_reproduce_hand_computed_results():
    assert yes_probability(0.3, 0.1) == pytest.approx(0.75)
    assert yes_probability(0.0, 0.0) == 0.5
    yes_q = _q(0, "is there a bus?", ["yes", "no"], "yes")
    no_q = _q(1, "is there a boat?", ["yes", "no"], "no", "object")
    mc_q = _q(2, "what color?", ["red", "blue", "green"], "blue", "color")
    g1 = grade(yes_q, p_yes=0.8)
    g2 = grade(no_q, p_yes=0.8)
    g3 = grade(mc_q, choice_loglik=[np.log(0.2), np.log(0.5), np.log(0.3)])
    assert (g1["correct"], g1["soft"]) == (True, pytest.approx(0.8))
    assert (g2["correct"], g2["soft"]) == (False, pytest.approx(0.2))
    assert (g3["predicted"], g3["correct"], g3["soft"]) == ("blue", True, pytest.approx(0.5))
    summary = summarise([(yes_q, g1), (no_q, g2), (mc_q, g3)])
    assert summary["accuracy"] == pytest.approx(2 / 3) and summary["soft"] == pytest.approx(0.5)
    other = summarise([(no_q, grade(no_q, p_yes=0.1))])
    pooled = pooled_categories([summary, other])
    assert pooled == {"color": {"accuracy": 1.0, "n": 1}, "object": {"accuracy": pytest.approx(2 / 3), "n": 3}}
    assert mismatched_pairs(["b", "a", "c"]) == {"a": "b", "b": "c", "c": "a"}


def test_yes_bias_control_is_reported(judges):
    ref, _ = judges
    yes_q = _q(0, "is there a bus?", ["yes", "no"], "yes")
    other = [_q(1, "is there a dog?", ["yes", "no"], "yes"), _q(2, "is there a kite?", ["yes", "no"], "yes")]
    emb = ref.image_embeddings([np.zeros((32, 32, 3), np.uint8)])[0]
    rec = ref.judge_image(emb, [yes_q], other)
    assert rec["mismatched_n"] == 2 and 0.0 <= rec["mismatched_yes_rate"] <= 1.0


@pytest.mark.parametrize("entry,message", [
    ({"caption": "c", "question": "q?", "choices": ["yes", "no"], "answer": "yes", "element_type": "o", "element": "e"},
     "entry 1 lacks field 'id'"),
    ({"id": "1", "caption": "c", "question": "q?", "choices": ["yes"], "answer": "yes", "element_type": "o", "element": "e"},
     "entry 1 field 'choices'"),
    ({"id": "1", "caption": "c", "question": "q?", "choices": ["red", "blue"], "answer": "green", "element_type": "o",
      "element": "e"}, "entry 1 field 'answer' ('green') is not one of its choices"),
    ({"id": "1", "caption": "c", "question": " ", "choices": ["yes", "no"], "answer": "no", "element_type": "o",
      "element": "e"}, "entry 1 field 'question' is empty"),
])
def test_malformed_question_files_name_index_and_field(tmp_path, entry, message):
    good = {"id": "0", "caption": "c", "question": "q?", "choices": ["yes", "no"], "answer": "yes",
            "element_type": "object", "element": "e"}
    f = tmp_path / "q.json"
    f.write_text(json.dumps([good, entry]))
    with pytest.raises(InputError, match=message.replace("(", "\\(").replace(")", "\\)")):
        load_questions(f)
    f.write_text("[{broken")
    with pytest.raises(InputError, match="invalid JSON"):
        load_questions(f)


@pytest.mark.heavy
def test_judge_vqa_cli_scores_a_folder(vqa_dir, questions_file, tmp_path):
    import os
    import subprocess
    import sys

    from PIL import Image

    questions = questions_file
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for cid in ("u00", "u01", "u05"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{cid}.png")
    env = {**os.environ, "SPQR_ENGINE_CACHE": str(tmp_path / "engines")}
    proc = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "judge", "vqa", "--model", vqa_dir, "--images",
                           str(tmp_path / "imgs"), "--questions", questions, "--json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    asked = [q for q in json.loads(open(questions).read()) if q["id"] in ("u00", "u01", "u05")]
    assert out["n_images"] == 3 and out["n_questions"] == len(asked) and out["backend"]["chosen"] == "ort-cpu"
    assert 0 <= out["tifa"] <= 1 and "attribute" in out["categories"] and out["yes_bias"] is not None
    bad = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "judge", "vqa", "--model", vqa_dir, "--images",
                          str(tmp_path), "--questions", questions], capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "is named after a caption id" in bad.stderr
