"""The README's own-data lines, run exactly as written, in a scratch git + DVC repository on a
generated 3-class 64x64 RGB folder: they end in a kept experiment whose model passes the
default device gate. Then a microcontroller the model does not fit stops the next experiment
at preflight, before training; and a failed gate (an int8-only TPU given mixed's float head) is
kept as an experiment too, registers nothing, and still turns `edgeqat ci run` red.

The lines are read from README.md, so the test fails when the README drifts. Training is kept
short through the scratch project's params.yaml (two epochs, three variants); the README's
commands and the default model (DS-CNN, alpha 1.0) and default gate are as a user has them.
Slow: two pipeline runs (about 4 min on 2 cores).
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from integration.conftest import BIN, REPO, make_pipeline_repo, run, stages_run, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLASSES = ("bolt", "nut", "washer")


def readme_own_data_lines() -> list[str]:
    """The command lines of the README's first bash block under "Your own data and model"."""
    section = (REPO / "README.md").read_text().split("## Your own data and model", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def write_folder(dest, per_class: int = 40, size: int = 64) -> None:
    """3 classes of RGB images a small CNN can tell apart: a bright band, a bright square, a ring."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    masks = [(abs(yy - size // 2) < size // 8), (abs(yy - size // 2) < size // 4) & (abs(xx - size // 2) < size // 4),
             (abs(np.hypot(yy - size / 2, xx - size / 2) - size / 3) < size / 12)]
    for name, mask in zip(CLASSES, masks):
        (dest / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
            img[mask] = np.clip(img[mask].astype(int) + rng.integers(120, 160, 3), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(dest / name / f"{i:03d}.png")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-data")
    home = root / "home"
    write_folder(home / "inspection-images")
    (home / ".gitconfig").write_text("[user]\n\tname = A User\n\temail = user@edgeqat.invalid\n")
    # The default model and device gate; short training so two runs fit the slow tier. Batches of 8
    # give BatchNorm's moving statistics enough updates (10 a epoch on 78 training images): with
    # the default 64 (2 updates a epoch) inference still used unsettled statistics and every
    # variant scored 0.3333, chance, which the chance gate then refused.
    params = tiny_params(**{"train.alpha": 1.0, "train.epochs": 6, "train.batch_size": 8, "train.learning_rate": 0.005,
                            "qat.batch_size": 8, "register.chance_margin": 0.1})
    repo = make_pipeline_repo(root / "proj", params)
    env = {"HOME": str(home), "MLFLOW_TRACKING_URI": ""}
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "the project"], repo, env)
    return {"repo": repo, "env": env}


def dvc_json(repo, env, *args: str):
    return json.loads(run([str(BIN / "dvc"), *args, "--json"], repo, env).stdout)


def experiments(repo, env) -> list[dict]:
    """Each experiment of `dvc exp show --json` with its metrics/headline.json."""
    out = []
    for rev in dvc_json(repo, env, "exp", "show"):
        for exp in rev.get("experiments") or []:
            for r in exp.get("revs") or []:
                data = (r.get("data") or {})
                head = (data.get("metrics") or {}).get("metrics/headline.json", {}).get("data", {})
                out.append({"name": exp.get("name") or r.get("name"), "headline": head})
    return out


def test_the_readme_lines_as_written_end_in_a_kept_experiment(project):
    repo, env = project["repo"], project["env"]
    lines = readme_own_data_lines()
    assert any(ln.startswith("edgeqat data add ") for ln in lines) and any(ln.startswith("dvc exp run") for ln in lines)
    outputs = []
    for line in lines:
        proc = subprocess.run(["bash", "-c", line], cwd=repo, capture_output=True, text=True,
                              env={**__import__("os").environ, "PATH": f"{BIN}:/usr/bin:/bin", **env})
        assert proc.returncode == 0, f"{line!r} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout + proc.stderr)
    said = "\n".join(outputs)
    assert "3 classes (bolt, nut, washer), 120 images; images are 64x64; colour" in said
    assert "prepare.source=folder, prepare.path=data/raw, prepare.image_size=64, prepare.channels=3" in said
    exps = experiments(repo, env)
    assert len(exps) == 1, exps
    head = exps[0]["headline"]
    assert head["gate_passed"] is True, head  # the default model passes the default gate at 64x64x3
    assert head["accuracy"] > 0.6 and head["test_images"] == 24
    names = run([str(BIN / "dvc"), "exp", "list", "--name-only"], repo, env).stdout.split()
    assert names == [exps[0]["name"]]
    meta = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta["class_names"] == list(CLASSES) and meta["image_shape"] == [64, 64, 3]


def test_a_failed_gate_is_a_kept_experiment_registers_nothing_and_turns_ci_red(project):
    from mlflow.tracking import MlflowClient

    repo, env = project["repo"], project["env"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    versions_before = len(client.search_model_versions("name='edgeqat-classifier'"))
    assert versions_before == 1  # the passing experiment registered its model
    # A device the model cannot fit stops the experiment at preflight, in seconds, before training.
    early = run([str(BIN / "dvc"), "exp", "run", "-S", "validate.required_devices=[rpi4,cortex_m7]"], repo, env, check=False)
    assert early.returncode != 0 and "train" not in stages_run(early.stdout)
    assert "cannot pass required device(s) cortex_m7; stopped before training" in early.stderr, early.stderr[-3000:]
    assert "validate.required_devices=[rpi4]" in early.stderr
    # A device whose budgets fit but which cannot run the validated file (mixed's float head on an
    # int8-only TPU) fails at the gate, after validate ran the file: a result, kept as an experiment.
    proc = run([str(BIN / "dvc"), "exp", "run", "-S", "validate.required_devices=[rpi4,coral_edgetpu]",
                "-S", "convert.variants=[fp32,ptq_int8,qat_int8,mixed]", "-S", 'qat.keep_float=["@last"]',
                "-S", "validate.model=mixed", "-S", "register.variant=mixed"], repo, env)
    assert stages_run(proc.stdout)[:1] == ["preflight"] and "validate" in stages_run(proc.stdout)
    assert "register" in stages_run(proc.stdout)
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "GATE FAILED" in ln]
    assert len(said) == 1 and said[0].startswith("register: GATE FAILED, nothing registered") and "coral_edgetpu" in said[0]
    exps = experiments(repo, env)
    assert len(exps) == 2 and sorted(e["headline"]["gate_passed"] for e in exps) == [False, True]
    failed = next(e for e in exps if not e["headline"]["gate_passed"])
    assert failed["headline"]["accuracy"] > 0.6 and failed["headline"]["devices_passed"] >= 1
    assert len(client.search_model_versions("name='edgeqat-classifier'")) == versions_before
    # the CI entry point on the same results: nothing to re-run, the gate fails, exit 1
    ci = run([str(BIN / "edgeqat"), "ci", "run", "--no-commit"], repo, env, check=False)
    assert ci.returncode == 1, ci.stderr[-2000:]
    assert "**Device gate FAILED**" in (repo / "ci-report.md").read_text()
