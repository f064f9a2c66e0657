"""The notebooks' one-call setup: parameter checks, unknown names, typed help, links."""
from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from tomato.book import notebook, parameters

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [pytest.param(p, id=p.stem) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]


def error(name: str, value: object) -> str:
    with pytest.raises(parameters.Invalid) as e:
        parameters.check(name, value)
    return str(e.value)


def test_values_inside_the_allowed_range_work():
    # any threshold >= 0, not only the paper's: no lookup keyed by them (0 merges every
    # neighbour, inf none, as on the model itself)
    for sim in (1e-5, 3.3e-9, 1.0, 1e-300, "1e-7", 0, float("inf")):
        assert parameters.check("sim", sim) == float(sim)
    assert parameters.check("keep_ratio", 1) == 1.0
    assert parameters.check("image_index", 0) == 0
    assert parameters.check("token", "(3, 4)") == (3, 4) and parameters.check("token", [0, 13]) == (0, 13)
    assert parameters.check("random_weights", "true") is True
    assert parameters.check("checkpoint", "None") is None
    assert parameters.check("bench_batch_sizes", 4) == [4]


@pytest.mark.parametrize("name, value, allowed", [
    ("sim", "abc", "a number"),
    ("sim", -1, "a number >= 0"),
    ("sim", float("nan"), "a number >= 0"),
    ("keep_ratio", 1.5, "a number in (0, 1]"),
    ("image_index", -1, "an integer >= 0"),
    ("image_index", 2.5, "an integer >= 0"),
    ("max_images", True, "an integer >= 1"),
    ("token", (1, 2, 3), "a (row, col) pair"),
    ("random_weights", "yes", "True or False"),
    ("device", "gpu", '"cpu", "cuda'),
])
def test_each_problem_is_one_line_naming_parameter_value_and_range(name, value, allowed):
    text = error(name, value)
    assert "\n" not in text and text.startswith(f"error: parameter {name} = {value!r}: expected ")
    assert allowed in text


def test_unknown_names_and_bad_values_are_all_reported_at_once():
    ns = {"__annotations__": {"sim": float, "image_index": int},
          "sim": "abc", "image_index": 0, "simm": 1e-3,
          "In": ["", "sim: float = 1e-7", "# Parameters\nsimm = 0.001\n", "page = ..."]}
    with pytest.raises(notebook.ParameterError) as e:
        notebook.check_parameters(ns)
    lines = e.value.lines
    assert lines[0] == "error: unknown parameter 'simm' (did you mean sim?); this notebook takes: sim, image_index"
    assert lines[1].startswith("error: parameter sim = 'abc'")
    assert e.value._render_traceback_() == lines  # IPython shows the lines, no traceback


def test_checked_values_are_the_ones_used():
    ns = {"__annotations__": {"sim": float, "warmup": int, "label": str},
          "sim": "1e-5", "warmup": 2, "label": "x", "In": ["# Parameters\nsim = '1e-5'\n"]}
    assert notebook.check_parameters(ns) == {"sim": 1e-5, "warmup": 2, "label": "x"}
    with pytest.raises(notebook.ParameterError):  # no rule: the annotation still types it
        notebook.check_parameters({**ns, "label": 3})


def test_parameter_table_says_what_each_means():
    t = notebook.parameter_table({"sim": 1e-5, "data": "smoke", "checkpoint": None})
    assert list(t["value"]) == ["1e-05", "'smoke'", "None"]
    assert t.set_index("parameter").loc["sim", "meaning"] == parameters.RULES["sim"].help
    from tomato.harness.models import WeightsInfo

    card = WeightsInfo("deit_tiny_distilled_patch16_224", "checkpoint:data/weights/x/model.safetensors", True, "a" * 64)
    p = {"model": "deit_base_patch16_224", "checkpoint": "x"}
    shown = notebook.parameter_table(p, card).set_index("parameter").loc["model"]
    # The model that runs, said once: no row names the default the card replaced.
    assert shown["value"] == "'deit_tiny_distilled_patch16_224'" and "card" in shown["meaning"]
    assert "deit_base" not in notebook.parameter_table(p, card).to_string()
    same = WeightsInfo("deit_base_patch16_224", "random-init:seed=0", False, "a" * 64)
    assert notebook.parameter_table(p, same).set_index("parameter").loc["model", "value"] == "'deit_base_patch16_224'"
    # random_weights did nothing where trained weights were found: no row says "random init" then.
    p = {**p, "random_weights": False}
    assert "random_weights" not in set(notebook.parameter_table(p, card)["parameter"])
    assert "random_weights" in set(notebook.parameter_table(p, same)["parameter"])


def _parameters_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    [cell] = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_help_notebook_shows_type_and_line_for_every_parameter(path: Path):
    papermill = pytest.importorskip("papermill")
    inferred = papermill.inspect_notebook(str(path))
    declared = re.findall(r"^(\w+)\s*[:=]", _parameters_cell(path), flags=re.M)
    assert list(inferred) == declared  # papermill parsed every line
    for name, p in inferred.items():
        assert p["inferred_type_name"] != "None" and p["help"], name
        if name in parameters.RULES:
            assert p["inferred_type_name"] == parameters.RULES[name].type, name


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_links_work_in_jupyterlab_and_in_the_book(path: Path):
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "{doc}`" not in text  # MyST roles show as literal text in JupyterLab
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{target} from notebooks/"
        in_book = build_book.book_link(target)
        # normpath: book/notebooks/ itself is made by the build, "../x.md" needs only book/x.md
        where = Path(os.path.normpath(ROOT / "book" / "notebooks" / in_book))
        # the executed copies of the notebooks are written next to it by the build
        assert where.exists() or (ROOT / "notebooks" / Path(in_book).name).exists(), f"{in_book} from book/notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_code_parses_as_python_3_8(path: Path):
    import ast

    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            ast.parse(source, feature_version=(3, 8))
            assert not re.search(r"\}\s*\|\s*\{", source), "dict | dict needs Python 3.9"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_a_page_reads_in_jupyterlab(path: Path):
    """At most five book modules per page (the page's own runs come through its Page), and
    every code line within 100 characters."""
    import ast

    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    book: set[str] = set()
    for cell in code:
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.ImportFrom) and node.module == "tomato.book":
                book |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tomato.book."):
                book.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                book |= {a.name.split(".")[2] for a in node.names if a.name.startswith("tomato.book.")}
    assert len(book) <= 5, sorted(book)
    long = [line for cell in code for line in "".join(cell["source"]).splitlines() if len(line) > 100]
    assert not long, long[:3]


def test_missing_weights_stop_with_one_line_unless_random_weights(monkeypatch: pytest.MonkeyPatch):
    from tomato.harness import models

    seen = {}

    def offline(name, checkpoint=None, random_fallback=False, device="cpu", **_):
        seen["random_fallback"] = random_fallback
        raise RuntimeError(f"Could not get pretrained weights for {name!r} (hub unreachable and nothing is "
                           "cached). To use real weights, either\n  1. connect ...")

    monkeypatch.setattr(models, "load", offline)
    with pytest.raises(notebook.ParameterError) as e:
        notebook._load_model({"model": "deit_base_patch16_224"})
    assert seen["random_fallback"] is False  # never random unless asked
    assert e.value.lines == [
        "error: no pretrained weights for 'deit_base_patch16_224' here (hub unreachable and nothing is cached); "
        "in JupyterLab set checkpoint = \"/path/to/weights.pth\" (or random_weights = True: seeded random-init "
        "weights, NOT accuracy) in the parameters cell and run all cells again; with papermill pass "
        "-p checkpoint /path/to/weights.pth (or -p random_weights True)"]


def test_executed_copies_link_to_book_pages(tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("see [the method](../book/method.md) and [the visit](02_visit.ipynb)"),
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/html": '<td><a href="03_merge.ipynb">03_merge</a></td>'}),
                    nbformat.v4.new_output("display_data", data={
                        "text/markdown": "([its card](00_model.ipynb), [a figure](10_trained.ipynb#figure-3))"})])]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, str(path))
    build_book.book_links(path)
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source == "see [the method](../method.md) and [the visit](02_visit.ipynb)"
    assert nb.cells[1].outputs[0]["data"]["text/html"] == '<td><a href="03_merge.html">03_merge</a></td>'
    assert nb.cells[1].outputs[1]["data"]["text/markdown"] == \
        "([its card](00_model.html), [a figure](10_trained.html#figure-3))"


def test_the_build_names_every_link_that_points_at_nothing(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    pages = tmp_path / "book" / "notebooks"
    pages.mkdir(parents=True)
    (pages / "00_model.html").write_text("<p>the card</p>")
    (pages / "01_x.html").write_text(
        '<a href="00_model.html#curve">ok</a> <a href="00_model.ipynb">JupyterLab only</a> <a href="#top">here</a>'
        ' <img src="data:image/png;base64,AAAA"> <a href="https://example.org/x">away</a>'
        ' <img src="../../_images/gone.png"> <pre>&lt;a href="03_merge.ipynb"&gt;</pre>')
    assert build_book.broken_links(tmp_path) == ["book/notebooks/01_x.html: 00_model.ipynb",
                                                 "book/notebooks/01_x.html: ../../_images/gone.png"]


def test_the_build_finds_the_pages_whose_source_is_gone(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    book, html = tmp_path / "book", tmp_path / "_build" / "html"
    (book / "notebooks").mkdir(parents=True)
    (book / "intro.md").write_text("# intro")
    (book / "notebooks" / "10_trained.ipynb").write_text("{}")
    (html / "book" / "notebooks").mkdir(parents=True)
    for page in ("intro.html", "gone.html", "notebooks/10_trained.html", "notebooks/07_reproduction.html"):
        (html / "book" / page).write_text("<p>page</p>")
    (html / "search.html").write_text("<p>Sphinx's own page</p>")
    assert build_book.orphan_pages(html, book) == [html / "book" / "gone.html",
                                                   html / "book" / "notebooks" / "07_reproduction.html"]


def test_interactive_runs_keep_apart_from_the_build():
    """A notebook run in JupyterLab writes its own runs, never the folder `make book` filled."""
    import yaml

    build = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())["runs"]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        found = re.search(r'^runs: str = "([^"]+)"', "".join(cell["source"]), flags=re.M)
        if found:
            assert found.group(1) != build, f"{path.name}: its default runs folder is the build's ({build})"


def test_paths_outside_the_checkout(tmp_path: Path):
    """A notebook copied out of the checkout finds the checkout the package came from, and a
    results folder outside the checkout is printed as it is."""
    from tomato.book.runs import repo_root, shown

    assert repo_root(tmp_path) == ROOT
    assert shown(tmp_path / "x.json") == str(tmp_path / "x.json")
    assert shown(ROOT / "data" / "results") == "data/results"


def test_parameters_cells_are_made_from_the_rules():
    """Every notebook's parameters cell is what parameters.cell renders from RULES (types and
    help in one place; python -m tomato.book.parameters --write notebooks/*.ipynb remakes them)."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(nb.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(cells) == 1, nb.name
        source = "".join(cells[0]["source"])
        assert source == parameters.cell(parameters.declared(source)), nb.name
    with pytest.raises(ValueError, match="no rule"):
        parameters.cell([("simm", "1e-7")])


def test_no_page_uses_a_name_it_never_defines():
    """pyflakes over each notebook as one module (ruff reads .ipynb): a module or function
    renamed or folded away, used in a cell other than its import's, fails here instead of
    in the build. The parameter cells' string annotations ("Optional[int]", as papermill
    reads them) are the one allowed kind of undefined name."""
    import subprocess
    import sys

    pytest.importorskip("ruff")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--select",
                          "F821,F811,F401", *sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    found = [line for line in out.stdout.splitlines() if ": F" in line
             and not re.search(r"F821 Undefined name `(Optional|List|Tuple|Dict)`", line)]
    assert not found, found
