"""Faults a real user meets: a killed or interrupted run, two runs into one folder, bad
input of every kind. Real processes are started (``python -m tomato``), killed with
SIGKILL / SIGINT and resumed; results are compared byte for byte with an uninterrupted
run. The bad-input cases run ``main()`` in-process (faster) and check the one ``error:``
line, the exit code, and that nothing was created or computed.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tomato.harness import data, models
from tomato.harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = "deit_tiny_patch16_224"
FILES = ("config.json", "predictions.csv", "bad_images.csv")
N_IMAGES = 16


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """An ImageNet-layout folder: N_IMAGES small real photos (the smoke set, resized and
    shifted so that no two are equal) plus one corrupt file."""
    root = tmp_path_factory.mktemp("faults") / "val"
    smoke = data.smoke_samples()
    for k in range(N_IMAGES):
        s = smoke[k % len(smoke)]
        img = data.load_image(s.path).resize((96 + 8 * (k // len(smoke)), 72))
        (root / s.wnid).mkdir(parents=True, exist_ok=True)
        img.save(root / s.wnid / f"img{k:02d}.JPEG")
    (root / smoke[0].wnid / "corrupt.JPEG").write_bytes(b"not a jpeg at all")
    return root


def eval_args(folder: Path, out: Path, variant: str = "tomato:sim=1e-3", batch: int = 1) -> list[str]:
    return ["eval", "--model", TINY, "--random-weights", "--variant", variant, "--data", str(folder),
            "--batch-size", str(batch), "--workers", "0", "--quiet", "--out", str(out)]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _terminal_signals() -> None:
    # As a terminal gives them: a suite started in the background by a non-interactive
    # shell (``make test &``) runs with SIGINT ignored, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tomato", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_terminal_signals)


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tomato", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def rows_in(out: Path) -> int:
    try:
        return max(0, len((out / "predictions.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def wait_for_rows(proc: subprocess.Popen, out: Path, at_least: int = 1, timeout: float = 240) -> int:
    """Poll until ``out`` holds ``at_least`` predictions while ``proc`` still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = rows_in(out)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no predictions appeared in time")


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """Uninterrupted runs, one per variant, made on first use."""
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            out = tmp_path_factory.mktemp("reference") / "run"
            proc = run(eval_args(images, out, variant))
            assert proc.returncode == 0, proc.stderr
            made[variant] = out
        return made[variant]
    return get


def assert_same_files(a: Path, b: Path) -> None:
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not [p.name for p in b.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- kill, interrupt, resume


def test_sigkill_mid_run_then_resume_is_byte_identical(images, reference, tmp_path):
    out = tmp_path / "killed"
    proc = start(eval_args(images, out))
    before = wait_for_rows(proc, out, at_least=2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = rows_in(out)
    assert before <= partial < N_IMAGES, "the kill must land mid-run"
    resumed = run(eval_args(images, out))
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["complete"] and summary["n_images"] == N_IMAGES and summary["n_bad"] == 1
    assert_same_files(reference("tomato:sim=1e-3"), out)
    assert len(json.loads((out / "provenance.json").read_text())["resumed"]) == 1


def test_sigint_stops_cleanly_and_prints_the_command_that_resumes(images, reference, tmp_path):
    out = tmp_path / "interrupted"
    proc = start(eval_args(images, out))
    wait_for_rows(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert line.startswith("error: interrupted; results so far are kept in ") and "resume with: " in line
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:3] == [sys.executable, "-m", "tomato"] and command[3:] == eval_args(images, out)
    again = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert_same_files(reference("tomato:sim=1e-3"), out)


# ---------------------------------------------------------------- one owner per folder


def test_a_run_into_a_folder_in_use_is_refused_and_the_owner_finishes(images, reference, tmp_path):
    out = tmp_path / "shared"
    owner = start(eval_args(images, out))
    wait_for_rows(owner, out)
    # Freeze the owner mid-run so that the overlap is certain however slow the machine.
    owner.send_signal(signal.SIGSTOP)
    try:
        second = run(eval_args(images, out))  # the SAME run: without a lock it would resume alongside
    finally:
        owner.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    (line,) = error_lines(second.stderr)
    assert f"{out} is in use by another run" in line and "choose another --out" in line
    _, err = owner.communicate(timeout=300)
    assert owner.returncode == 0, err
    assert_same_files(reference("tomato:sim=1e-3"), out)


def test_two_runs_started_at_once_never_mix(images, reference, tmp_path):
    out = tmp_path / "race"
    variants = ["tomato:sim=1e-3", "tomato:sim=1e-7"]
    procs = [start(eval_args(images, out, v)) for v in variants]
    results = [(p, *p.communicate(timeout=400)) for p in procs]
    codes = [p.returncode for p, _, _ in results]
    assert sorted(codes) == [0, 2], [err for _, _, err in results]
    winner = variants[codes.index(0)]
    (line,) = error_lines(results[codes.index(2)][2])
    assert "in use by another run" in line or "holds results of a different run" in line
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["variant"] == summary["variant"] == ("tomato:sim=" + repr(float(winner.split("=")[1])))
    assert_same_files(reference(winner), out)


# ---------------------------------------------------------------- transient read failures


def test_a_file_unreadable_now_is_retried_on_resume(images, reference, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "flaky"
    locked = sorted(images.rglob("img03.JPEG"))[0]
    real = data.load_image

    def load(path):
        if Path(path) == locked:  # root ignores chmod 000: raise what a user would get
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(data, "load_image", load)
    assert main(eval_args(images, out)) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert not summary["complete"] and summary["n_retry"] == 1 and summary["n_bad"] == 1
    (line,) = error_lines(captured.err)
    assert "could not be read now" in line and "rerun" in line
    bad = (out / "bad_images.csv").read_text()
    assert f"transient,PermissionError: [Errno 13] Permission denied: '{locked}'" in bad
    assert "corrupt,UnidentifiedImageError: cannot identify image file" in bad
    monkeypatch.setattr(data, "load_image", real)  # access fixed
    assert main(eval_args(images, out)) == 0
    assert json.loads(capsys.readouterr().out)["complete"]
    assert_same_files(reference("tomato:sim=1e-3"), out)


# ---------------------------------------------------------------- one error line per bad input


@pytest.fixture()
def no_compute(monkeypatch):
    """Fail the test if a model is loaded: the check must come before any compute."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a model was loaded before the check"))


def refused(argv: list[str], capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    (line,) = error_lines(err)
    return line


def _read_only_dir(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        tempfile.mkstemp(dir=ro)
    except OSError:
        return ro
    # root writes through mode bits; /sys refuses even root on Linux.
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    pytest.skip("no read-only folder available")


def test_out_that_is_a_file_or_read_only_is_refused_first(images, tmp_path, capsys, no_compute):
    (tmp_path / "file").write_text("x")
    line = refused(eval_args(images, tmp_path / "file"), capsys)
    assert f"--out {tmp_path / 'file'} is an existing file" in line
    ro = _read_only_dir(tmp_path)
    line = refused(eval_args(images, ro / "run"), capsys)
    assert f"--out {ro / 'run'}: cannot write in {ro}" in line and "writable" in line
    assert not (ro / "run").exists()
    line = refused(["sweep", "--model", TINY, "--random-weights", "--out", str(tmp_path / "file")], capsys)
    assert "is an existing file" in line


@pytest.mark.parametrize("command", ["agree", "time"])
def test_json_out_that_is_a_folder_is_refused_before_compute(command, tmp_path, capsys, no_compute):
    line = refused([command, "--model", TINY, "--random-weights", "--out", str(tmp_path)], capsys)
    assert f"--out {tmp_path} is an existing folder; give a file name" in line


def test_numbers_out_of_range_are_refused(tmp_path, capsys, no_compute):
    line = refused(["time", "--model", TINY, "--random-weights", "--batch-sizes", "1", "0"], capsys)
    assert line == "error: --batch-sizes 0: must be an integer >= 1"
    line = refused(["agree", "--model", TINY, "--random-weights", "--sims", "-1", "--out",
                    str(tmp_path / "a.json")], capsys)
    assert line.startswith("error: --sims -1.0: sim must be a number >= 0")
    line = refused(["agree", "--model", TINY, "--random-weights", "--keep", "1.5", "--out",
                    str(tmp_path / "a.json")], capsys)
    assert line.startswith("error: --keep 1.5: keep_ratio must be a number in (0, 1]")
    line = refused(eval_args(tmp_path, tmp_path / "o", batch=0), capsys)
    assert line == "error: --batch-size 0: must be an integer >= 1"
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_is_not_a_vit_is_refused_before_anything(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: pytest.fail("a forward ran"))
    argv = eval_args(images, tmp_path / "r")
    argv[argv.index(TINY)] = "resnet18"
    argv[argv.index("tomato:sim=1e-3")] = "deit"
    line = refused(argv, capsys)
    assert "model 'resnet18' is not supported" in line and "--model deit_base_patch16_224" in line
    assert not (tmp_path / "r").exists()


def _checkpoints(tmp_path: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    tiny = {"w": torch.zeros(64, 64)}
    save_file(tiny, str(tmp_path / "whole.safetensors"))
    torch.save(tiny, tmp_path / "whole.pth")
    files = {}
    for name, content in [
        ("truncated.safetensors", (tmp_path / "whole.safetensors").read_bytes()[:1000]),
        ("garbage.safetensors", os.urandom(4096)),
        ("garbage.pth", b"e" * 101),
        ("truncated.pth", (tmp_path / "whole.pth").read_bytes()[:500]),
    ]:
        (tmp_path / name).write_bytes(content)
        files[name] = tmp_path / name
    return files


def test_unreadable_checkpoints_are_named_with_what_to_do(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, path in _checkpoints(tmp_path).items():
        argv = eval_args(images, tmp_path / "r")
        argv[argv.index("--random-weights")] = "--checkpoint"
        argv.insert(argv.index("--checkpoint") + 1, str(path))
        line = refused(argv, capsys)
        kind = "safetensors" if name.endswith("safetensors") else "torch"
        assert line.startswith(f"error: checkpoint {path} is not a readable {kind}"), line
        assert "download it again" in line and "(" in line and not line.endswith(": 101")
        assert not (tmp_path / "r").exists()


def test_a_distilled_checkpoint_for_a_plain_deit_names_the_right_model(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    distilled, _ = models.load("deit_tiny_distilled_patch16_224", pretrained=False)
    torch.save(distilled.state_dict(), tmp_path / "distilled.pth")
    argv = eval_args(images, tmp_path / "r")
    argv[argv.index("--random-weights")] = "--checkpoint"
    argv.insert(argv.index("--checkpoint") + 1, str(tmp_path / "distilled.pth"))
    line = refused(argv, capsys)
    assert "is a distilled DeiT" in line and "--model deit_base_distilled_patch16_224" in line
    assert not (tmp_path / "r").exists()


def test_a_non_utf8_file_name_is_named(images, tmp_path, capsys, monkeypatch, no_compute):
    folder = tmp_path / "val" / "n02123045"
    folder.mkdir(parents=True)
    with open(bytes(folder) + b"/caf\xe9.JPEG", "wb") as fh:
        fh.write(next(images.rglob("img00.JPEG")).read_bytes())
    line = refused(eval_args(tmp_path / "val", tmp_path / "r"), capsys)
    assert "caf\\udce9.JPEG" in line and "not valid UTF-8; rename it" in line
    assert not (tmp_path / "r").exists()


def test_an_unreadable_class_folder_is_named(images, tmp_path, capsys, monkeypatch, no_compute):
    blocked = sorted(p for p in images.iterdir() if p.is_dir())[1]
    real = Path.iterdir

    def iterdir(self):
        if self == blocked:  # root lists a chmod-000 folder anyway: raise what a user gets
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    line = refused(eval_args(images, tmp_path / "r"), capsys)
    assert f"cannot read the class folder {blocked} (PermissionError" in line and "chmod" in line
    assert not (tmp_path / "r").exists()
