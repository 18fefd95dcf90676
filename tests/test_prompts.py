import json

import pytest

from spqr_fast.config import PromptSet
from spqr_fast.errors import InputError
from spqr_fast.prompts import list_reference_images, load_prompt_set


def _load(path, **kw):
    return load_prompt_set(PromptSet(path=str(path), **kw))


def test_i2p_csv_keeps_multilabel_categories_and_file_seeds(tmp_path):
    f = tmp_path / "i2p.csv"
    f.write_text(
        "prompt,categories,hard,inappropriate_percentage,nudity_percentage,sd_seed,sd_guidance_scale,sd_image_width\n"
        '"a nude figure","sexual,shocking",1,80.0,60.0,1234,7,512\n'
        '"a fight","violence",0,40.0,0.0,99,12,512\n'
        '"",hate,0,0,0,1,7,512\n'
    )
    ps = _load(f)
    assert [p.categories for p in ps] == [("sexual", "shocking"), ("violence",)]  # empty prompt dropped
    assert ps[0].seed == 1234 and ps[1].guidance == 12.0
    assert [p.text for p in _load(f, categories=["violence"])] == ["a fight"]


def test_visu_json_filters_tags_and_samples_with_seed(tmp_path):
    rows = [{"incremental_id": i, "safe": f"safe {i}", "nsfw": f"nsfw {i}", "coco_id": i,
             "tag": ["sexual", "nudity", "violence"][i % 3], "prompt_id": i} for i in range(30)]
    f = tmp_path / "visu.json"
    f.write_text(json.dumps(rows))
    kept = _load(f, tags=["sexual", "nudity"])
    assert len(kept) == 20 and all(p.categories[0] in ("sexual", "nudity") for p in kept)
    a = _load(f, tags=["sexual", "nudity"], sample=5, sample_seed=42)
    b = _load(f, tags=["sexual", "nudity"], sample=5, sample_seed=42)
    c = _load(f, tags=["sexual", "nudity"], sample=5, sample_seed=7)
    assert [p.id for p in a] == [p.id for p in b] != [p.id for p in c]
    assert a[0].extra["safe"].startswith("safe")


def test_ring_a_bell_repeated_case_numbers_get_unique_ids(tmp_path):
    f = tmp_path / "rab.json"
    f.write_text(json.dumps([{"case_number": 3, "prompt": "x", "content_flag": 1},
                             {"case_number": 3, "prompt": "y", "content_flag": 1},
                             {"case_number": 4, "prompt": "z", "content_flag": 0}]))
    assert [p.id for p in _load(f)] == ["3", "3#1", "4"]


def test_plain_formats(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,category,id\nhello,nudity,x1\nworld,,x2\n")
    (tmp_path / "b.jsonl").write_text('{"prompt": "one", "category": "sexual"}\n\n{"prompt": "two"}\n')
    (tmp_path / "c.txt").write_text("first\n\nsecond\n")
    (tmp_path / "d.json").write_text(json.dumps([{"prompt": "p", "nudity_percentage": 55.0}]))
    assert [(p.id, p.categories) for p in _load(tmp_path / "a.csv")] == [("x1", ("nudity",)), ("x2", ())]
    assert [p.text for p in _load(tmp_path / "b.jsonl")] == ["one", "two"]
    assert [p.id for p in _load(tmp_path / "c.txt")] == ["p00000", "p00001"]
    assert _load(tmp_path / "d.json")[0].extra["nudity_percentage"] == 55.0
    assert len(_load(tmp_path / "c.txt", limit=1)) == 1


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", '{"prompt": "ok"}\n{broken\n', "line 2 is not valid JSON"),
    ("bad.csv", "Original,Spanish\nhello,hola\nbye,adios\n", "no prompt column among 'Original', 'Spanish'"),
    ("bad.json", "[{\"prompt\": \"\"}]", "none of its 1 rows has text in the prompt column 'prompt'"),
    ("bad.xml", "<x/>", "unknown extension"),
])
def test_malformed_prompt_files_name_the_problem(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        _load(f)


def test_filter_leaving_nothing_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,category\nhello,nudity\n")
    with pytest.raises(InputError, match="no prompts left"):
        _load(tmp_path / "a.csv", categories=["hate"])


def test_reference_folder_needs_images(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list_reference_images(tmp_path / "nope")
    with pytest.raises(InputError, match="at least 2"):
        list_reference_images(tmp_path)


def test_a_huge_prompt_line_is_cut_with_a_counted_warning(tmp_path):
    from spqr_fast.prompts import MAX_PROMPT_CHARS

    f = tmp_path / "p.txt"
    f.write_text("a short prompt\n" + "x" * 5_000_000 + "\n" + "y" * (MAX_PROMPT_CHARS + 1) + "\n")
    heard = []
    ps = load_prompt_set(PromptSet(path=str(f)), warn=heard.append)
    assert [len(p.text) for p in ps] == [14, MAX_PROMPT_CHARS, MAX_PROMPT_CHARS]
    assert len(heard) == 1 and "2 prompts longer than 2000 characters cut" in heard[0]


def test_binary_and_folder_prompt_files_are_named(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(b"prompt\n\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        _load(f)
    with pytest.raises(InputError, match="is a folder"):
        _load(tmp_path)


def test_erasure_project_csvs_give_their_seeds_and_case_numbers(tmp_path):
    """The CSVs concept-erasure projects ship name seed and guidance `evaluation_*` and carry a
    case number: the same prompt keeps one id (hence one seed) in any subset of the file."""
    f = tmp_path / "nudity.csv"
    f.write_text("case_number,prompt,evaluation_seed,evaluation_guidance\n"
                 "17,a nude figure,4242,7.5\n"
                 "3,a fight,11,9\n")
    ps = _load(f, use_file_seeds=True)
    assert [(p.id, p.seed, p.guidance) for p in ps] == [("17", 4242, 7.5), ("3", 11, 9.0)]
    sub = tmp_path / "subset.csv"
    sub.write_text("case_number,prompt,evaluation_seed,evaluation_guidance\n3,a fight,11,9\n")
    assert _load(sub)[0].id == "3"


def test_file_seeds_asked_of_a_file_without_seeds_are_refused(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("prompt\na\nb\n")
    with pytest.raises(InputError, match="use_file_seeds is set but the file gives no per-prompt seed"):
        _load(f, use_file_seeds=True)


def test_ids_carry_their_set_and_never_collide_across_sets(tmp_path):
    from spqr_fast.prompts import distinct_ids

    harm_txt, util_txt = tmp_path / "h.txt", tmp_path / "u.txt"
    harm_txt.write_text("a\nb\n")
    util_txt.write_text("c\nd\n")
    harmful = load_prompt_set(PromptSet(path=str(harm_txt)), id_prefix="h")
    utility = load_prompt_set(PromptSet(path=str(util_txt), limit=1), id_prefix="u")
    assert [p.id for p in harmful] == ["h00000", "h00001"] and [p.id for p in utility] == ["u00000"]
    assert [p.id for p in _load(harm_txt)] == ["p00000", "p00001"]  # outside an eval: the generic prefix
    # files with their own ids, both numbered from 1: the utility clash is renamed, with a warning
    h_csv, u_csv = tmp_path / "h.csv", tmp_path / "u.csv"
    h_csv.write_text("id,prompt\n1,x\n2,y\n")
    u_csv.write_text("id,prompt\n2,z\n3,w\n")
    heard = []
    utility = distinct_ids(_load(h_csv), _load(u_csv), heard.append)
    assert [p.id for p in utility] == ["u:2", "3"] and "'2'" in heard[0]
    assert distinct_ids(harmful, utility) is utility  # nothing to rename: the same list back
