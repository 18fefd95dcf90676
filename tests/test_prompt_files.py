"""Prompt files in the shapes the field publishes, written here (no third-party copies): each
read by its column roles, with the prompts, ids, seeds, guidance and categories asserted, and
every skipped or changed row counted."""

import json

import pytest
from click.testing import CliRunner

from spqr_fast.cli import main
from spqr_fast.config import PromptSet
from spqr_fast.errors import InputError
from spqr_fast.prompts import load_prompt_set, read_prompt_file


def _read(tmp_path, name, content, **options):
    f = tmp_path / name
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    return read_prompt_file(PromptSet(path=str(f), **options))


# (file name, content, options, [(id, text, categories, seed, guidance)…], expected counts)
SHAPES = [
    pytest.param("coco.csv", "image_id,text\n139,a cat on a sofa\n139,a sofa with a cat\n285,a red bus\n", {},
                 [("139", "a cat on a sofa", (), None, None), ("139#1", "a sofa with a cat", (), None, None),
                  ("285", "a red bus", (), None, None)],
                 {"repeated ids renamed '<id>#<k>'": 1}, id="coco-captions"),
    pytest.param("paired.csv", "sensitive prompt,normal prompt\nan unsafe scene,a safe scene\n",
                 {"prompt_column": "normal prompt"}, [("p00000", "a safe scene", (), None, None)], {},
                 id="paired-safe-unsafe-chosen"),
    pytest.param("multi.csv", "Original,Spanish,French\na dog,un perro,un chien\na cat,un gato,un chat\n",
                 {"prompt_column": "Spanish"},
                 [("p00000", "un perro", (), None, None), ("p00001", "un gato", (), None, None)], {},
                 id="multilingual-column-chosen"),
    pytest.param("para.json", json.dumps({"nudity": ["a nude figure", "an undressed man"], "violence": ["a fight"]}),
                 {}, [("p00000", "a nude figure", ("nudity",), None, None),
                      ("p00001", "an undressed man", ("nudity",), None, None),
                      ("p00002", "a fight", ("violence",), None, None)], {}, id="json-mapping-of-concepts"),
    pytest.param("nested.json", json.dumps({"meta": {"v": 1}, "data": {"items": [{"prompt": "x", "id": 5}]}}),
                 {"json_path": "data.items"}, [("5", "x", (), None, None)], {}, id="json-path"),
    pytest.param("lines.csv", "a cat, sitting on a mat\n\"a dog, running\"\nthe sea\n", {},
                 [("p00000", "a cat, sitting on a mat", (), None, None), ("p00001", "a dog, running", (), None, None),
                  ("p00002", "the sea", (), None, None)], {}, id="headerless-one-per-line-csv"),
    pytest.param("ctrl.txt", "a cat\x0bon a mat\nform\x0cfeed\r\nplain\n", {},
                 [("p00000", "a cat on a mat", (), None, None), ("p00001", "form feed", (), None, None),
                  ("p00002", "plain", (), None, None)],
                 {"prompts with control characters (replaced by spaces)": 2}, id="txt-split-at-line-breaks-only"),
    pytest.param("zero.csv", "case_number,prompt,evaluation_seed,evaluation_guidance\n0,first,7,7.5\n1,second,8,9\n",
                 {}, [("0", "first", (), 7, 7.5), ("1", "second", (), 8, 9.0)], {}, id="case-number-zero"),
    pytest.param("casenum.csv", "case_num,prompt,class\n12,a portrait,nudity\n4,a battle,violence\n", {},
                 [("12", "a portrait", ("nudity",), None, None), ("4", "a battle", ("violence",), None, None)], {},
                 id="case_num-and-class"),
    pytest.param("artist.csv", "prompt,artist\na starry night,Van Gogh\n", {},
                 [("p00000", "a starry night", ("Van Gogh",), None, None)], {}, id="artist-column"),
    pytest.param("explicit.csv", "case_number,prompt,evaluation_seed\n3,a thing,99\n", {"format": "csv"},
                 [("3", "a thing", (), 99, None)], {}, id="explicit-csv-keeps-seeds"),
    pytest.param("i2p.csv", "prompt,categories,sd_seed,sd_guidance_scale,case_number\n"
                 "a,\"sexual,shocking\",1,7,0\n,hate,2,7,1\nb,violence,3,12,2\n", {"format": "i2p"},
                 [("0", "a", ("sexual", "shocking"), 1, 7.0), ("2", "b", ("violence",), 3, 12.0)], {},
                 id="i2p-empty-prompt-skipped"),
    pytest.param("ids.jsonl", '{"id": 0, "prompt": "zero"}\n"a bare string prompt"\n', {},
                 [("0", "zero", (), None, None), ("p00001", "a bare string prompt", (), None, None)], {},
                 id="jsonl-id-zero-and-bare-strings"),
    pytest.param("visu.json", json.dumps([{"incremental_id": 4, "safe": "s", "nsfw": "an nsfw prompt", "tag": "nudity",
                                           "prompt_id": 9}]), {},
                 [("4", "an nsfw prompt", ("nudity",), None, None)], {}, id="visu-by-roles"),
    pytest.param("custom.csv", "key,body,s,g,topic\nk1,hello,5,3.5,hate\n",
                 {"prompt_column": "body", "id_column": "key", "seed_column": "s", "guidance_column": "g",
                  "category_column": "topic"}, [("k1", "hello", ("hate",), 5, 3.5)], {}, id="every-role-given"),
]


@pytest.mark.parametrize("name,content,options,expected,altered", SHAPES)
def test_published_shapes_read_by_role(tmp_path, name, content, options, expected, altered):
    prompts, report = _read(tmp_path, name, content, **options)
    assert [(p.id, p.text, p.categories, p.seed, p.guidance) for p in prompts] == expected
    assert {reason: t.count for reason, t in report.altered.by_reason.items()} == altered
    assert report.kept == len(expected)


def test_the_same_case_number_is_the_same_id_in_every_file_type(tmp_path):
    """One id scheme: case 0 is '0' from a CSV with I2P columns, a plain CSV, JSON and JSON Lines."""
    files = {
        "a.csv": "prompt,categories,case_number\nx,sexual,0\n",
        "b.csv": "prompt,case_number\nx,0\n",
        "c.json": json.dumps([{"prompt": "x", "case_number": 0}]),
        "d.jsonl": json.dumps({"prompt": "x", "case_number": 0}) + "\n",
    }
    for name, content in files.items():
        prompts, _ = _read(tmp_path, name, content)
        assert prompts[0].id == "0", name


def test_skipped_rows_are_counted_and_warned_with_a_first_example(tmp_path):
    f = tmp_path / "i2p.csv"
    f.write_text("prompt,categories,case_number\n" + "".join(f"p{i},hate,{i}\n" for i in range(5)) + ",hate,5\n,x,6\n")
    heard = []
    prompts = load_prompt_set(PromptSet(path=str(f)), warn=heard.append)
    assert len(prompts) == 5
    assert heard == [f"prompt file '{f}': 2 rows with an empty prompt skipped (first: row 7)"]


def test_category_columns_other_than_category_can_filter(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("prompt,type\na,nudity\nb,violence\n")
    assert [p.text for p in load_prompt_set(PromptSet(path=str(f), categories=["violence"]))] == ["b"]


def test_an_ambiguous_prompt_column_is_named(tmp_path):
    prompts, report = _read(tmp_path, "p.csv", "sensitive prompt,normal prompt,text\nbad,good,other\n")
    assert prompts[0].text == "other"  # 'text' is the more usual name of the two roles' candidates
    assert report.roles["prompt"] == "text" and "set prompt_column" in report.notes[0]


@pytest.mark.parametrize("content,message", [
    ("prompt,seed\na,abc\n", "row 2: seed 'abc' is not a whole number"),
    ("prompt,seed\na,1.5\n", "row 2: seed '1.5' is not a whole number"),
    ("prompt,guidance\na,nan\n", "row 2: guidance 'nan' is not a finite guidance scale"),
    ("prompt,guidance\na,-3\n", "row 2: guidance '-3' is not a finite guidance scale"),
])
def test_unreadable_seeds_and_guidance_name_the_row(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        _read(tmp_path, "p.csv", content)


def test_wrong_roles_and_paths_get_one_line(tmp_path):
    with pytest.raises(InputError, match="prompt_column 'nope' is not a column"):
        _read(tmp_path, "a.csv", "prompt\nx\n", prompt_column="nope")
    with pytest.raises(InputError, match="json_path 'data.x' has no 'x'.*keys there: 'items'"):
        _read(tmp_path, "b.json", json.dumps({"data": {"items": []}}), json_path="data.x")
    with pytest.raises(InputError, match="neither a list of prompts nor a mapping"):
        _read(tmp_path, "c.json", json.dumps({"a": 1, "b": [2]}))


def test_prompts_inspect_reports_roles_counts_and_first_prompts(tmp_path):
    f = tmp_path / "i2p.csv"
    f.write_text("prompt,categories,sd_seed,case_num\n"
                 "a [bold]x[/bold] \x1b]0;title\x07,sexual,1,0\n,hate,2,1\nb,violence,3,0\n")
    result = CliRunner().invoke(main, ["prompts", "inspect", str(f), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "csv" and report["roles"]["id"] == "case_num" and report["roles"]["seed"] == "sd_seed"
    assert (report["rows_read"], report["prompts_kept"], report["prompts_with_seed"]) == (3, 2, 2)
    assert report["skipped"] == {"rows with an empty prompt": {"count": 1, "first": "row 3"}}
    assert report["altered"]["repeated ids renamed '<id>#<k>'"]["count"] == 1
    assert report["categories"] == {"sexual": 1, "violence": 1}
    assert [p["id"] for p in report["first_prompts"]] == ["0", "0#1"]
    text = CliRunner().invoke(main, ["prompts", "inspect", str(f), "--categories", "violence"])
    assert text.exit_code == 0 and "selected 1" in text.output
    assert "\x1b" not in text.output and "[bold]x[/bold]" in text.output  # shown as written, not obeyed


def test_prompts_inspect_bad_input_is_one_line(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("Original,Spanish\na,b\nc,d\n")
    result = CliRunner().invoke(main, ["prompts", "inspect", str(f)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "set 'prompt_column'" in result.output
    ok = CliRunner().invoke(main, ["prompts", "inspect", str(f), "--prompt-column", "Spanish", "--json"])
    assert json.loads(ok.stdout)["first_prompts"][0]["prompt"] == "b"


def test_generate_reads_prompt_files_by_the_same_roles(tmp_path):
    """`generate --prompts` takes the format and column options too; a wrong column is refused
    before any model loads."""
    f = tmp_path / "m.csv"
    f.write_text("Original,Spanish\na,b\nc,d\n")
    args = ["generate", "--model", str(tmp_path), "--prompts", str(f), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--prompt-column", "German"])
    assert result.exit_code == 2 and "prompt_column 'German' is not a column" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(main, [*args, "--prompts-format", "txt", "--prompt-column", "x"])
    assert result.exit_code == 2 and "prompt_column 'x' is not a column (columns: 'prompt')" in result.output
