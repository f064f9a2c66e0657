"""Recipe files (TOML/YAML) and the train command's overrides: round trips, refusals, one run."""
from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from tomato.harness import cli, modelcard, recipe

from test_training import make_split_tree


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(recipe.RECIPES))
def test_every_builtin_recipe_reads_back_equal_from_toml_and_yaml(tmp_path, name):
    r = recipe.RECIPES[name]
    toml = tmp_path / "r.toml"
    toml.write_text(recipe.to_toml(r))
    assert recipe.load(toml) == r
    as_yaml = tmp_path / "r.yaml"
    as_yaml.write_text(yaml.safe_dump(r.as_dict()))
    assert recipe.load(as_yaml) == r


def test_a_recipe_text_with_quotes_newlines_and_backslashes_reads_back_equal(tmp_path):
    r = dataclasses.replace(recipe.RECIPES["tiny"], source='a "quoted" line\nand a \\ backslash, é')
    path = tmp_path / "r.toml"
    path.write_text(recipe.to_toml(r), encoding="utf-8")
    assert recipe.load(path) == r


def test_overrides_change_the_named_phase_or_the_first_student_phase():
    base = recipe.RECIPES["imagenette-cpu"]
    r = recipe.override(base, epochs=3, lr=1e-3, batch_size=8)
    assert [p.epochs for p in r.phases] == [base.phases[0].epochs, 3, base.phases[2].epochs]
    assert r.phases[1].lr == 1e-3 and r.phases[1].batch_size == 8 and r.phases[0] == base.phases[0]
    t = recipe.override(base, phase="teacher", epochs=2)
    assert t.phases[0].epochs == 2 and t.phases[1:] == base.phases[1:]
    m = recipe.override(base, model="deit_small_distilled_patch16_224")
    assert [p.model for p in m.phases] == ["resnet18"] + ["deit_small_distilled_patch16_224"] * 2


BAD_FILES = {
    "unknown field 'foo'": ('name = "x"\n[[phases]]\nname = "a"\nrole = "student"\nmodel = "deit_tiny_patch16_224"\n'
                            'epochs = 1\nresolution = 32\nbatch_size = 2\nlr = 1e-3\nfoo = 1\n', "toml"),
    "epochs must be an integer": ('[[phases]]\nname = "a"\nrole = "student"\nmodel = "deit_tiny_patch16_224"\n'
                                  'epochs = "2"\nresolution = 32\nbatch_size = 2\nlr = 1e-3\n', "toml"),
    "missing 1 required positional argument: 'lr'": ('[[phases]]\nname = "a"\nrole = "student"\n'
                                                     'model = "m"\nepochs = 2\nresolution = 32\nbatch_size = 2\n',
                                                     "toml"),
    "TOMLDecodeError": ('[[phases]\n', "toml"),
    "could not determine a constructor": ('phases:\n - !!python/object/apply:os.system ["echo pwned"]\n', "yaml"),
    "give at least one phase": ("name: x\n", "yml"),
    "must end in .toml": ("{}", "json"),
}


def test_bad_recipe_files_and_overrides_get_one_error_line_and_no_folder(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"train": 2, "val": 1})
    cases = {}
    for i, (expected, (text, suffix)) in enumerate(BAD_FILES.items()):
        path = tmp_path / f"bad{i}.{suffix}"
        path.write_text(text)
        cases[expected] = ["--recipe", str(path)]
    cases.update({
        "file not found": ["--recipe", str(tmp_path / "typo.toml")],
        "--epochs 0: phase 'low-res': epochs must be an integer >= 1": ["--recipe", "tiny", "--epochs", "0"],
        "--lr -1.0: phase 'low-res': lr must be a finite number > 0": ["--recipe", "tiny", "--lr", "-1"],
        "--phase warmup: recipe 'tiny' has the phases teacher, low-res, fine-tune":
            ["--recipe", "tiny", "--phase", "warmup", "--epochs", "2"],
        "model 'resnet50' is not supported": ["--recipe", "tiny", "--model", "resnet50"],
    })
    for expected, extra in cases.items():
        out = tmp_path / "run"
        assert cli.main(["train", "--data", str(tree), "--out", str(out), "--threads", "1", "--quiet", *extra]) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], (expected, lines)
        assert not out.exists()


@pytest.mark.slow
def test_a_recipe_file_with_overrides_trains_a_teacher_then_continues_its_parent(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"train": 8, "val": 2})
    first = tmp_path / "first"
    assert cli.main(["train", "--data", str(tree), "--out", str(first), "--recipe", "tiny", "--threads", "1",
                     "--quiet"]) == 0
    # The tiny recipe, continuing itself with a fresh teacher, as a user's file.
    path = tmp_path / "mine.toml"
    path.write_text(recipe.to_toml(dataclasses.replace(recipe.RECIPES["tiny"], name="mine", continues="tiny")))
    second = tmp_path / "second"
    assert cli.main(["train", "--data", str(tree), "--out", str(second), "--recipe", str(path), "--epochs", "1",
                     "--init", str(first / modelcard.WEIGHTS_FILE), "--threads", "1", "--quiet"]) == 0
    a = json.loads((first / modelcard.CARD_FILE).read_text())
    b = json.loads((second / modelcard.CARD_FILE).read_text())
    assert [r["phase"] for r in b["curve"]] == ["teacher", "low-res", "fine-tune"]  # --epochs 1: one low-res
    assert b["recipe"]["name"] == "mine" and b["parent"]["weights_sha256"] == a["weights_sha256"]
    capsys.readouterr()
    assert cli.main(["train", "--recipe", str(path), "--epochs", "1", "--show-recipe"]) == 0
    shown = tmp_path / "shown.toml"
    shown.write_text(capsys.readouterr().out)
    assert recipe._from_data(b["recipe"], "card") == recipe.load(shown)  # the card holds the recipe that ran
