"""The team workflow on real parts: a bare git `origin`, a local-folder DVC remote, a real
`mlflow server` on 127.0.0.1, and `edgeqat ci run` as every workflow calls it.

One scratch project (tiny params, a DVC-tracked npz data set) lives through it in order:
CI run 1 -> new data committed and pushed -> CI run 2 -> CI run 3 with nothing changed; a
second clone pulls and finds nothing to re-run; a forced re-run of train changes nothing
downstream; replacing the pretrained model marks train changed; a fresh clone's `make demo`
leaves git clean and shows host latency; a forced re-run of every stage leaves git clean; a
required device failing ends `dvc repro` with a failed MLflow run, registers nothing, and makes
`edgeqat stage register` and `edgeqat ci run` exit 1.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import synthetic_images
from edgeqat.workspace.stages import STAGES
from integration.conftest import BIN, REPO, make_pipeline_repo, run, stages_run, tiny_params
from integration.kfp_runs import WITH_MIXED

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GIT = ["git", "-c", "user.name=edgeqat test", "-c", "user.email=test@edgeqat.invalid"]
EXPERIMENT, MODEL = "team", "team-classifier"


def write_data(repo: Path, n: int, seed: int) -> None:
    x, y = synthetic_images(n, seed=seed)
    np.savez(repo / "data" / "raw" / "data.npz", x=x, y=y, class_names=np.array(["tl", "tr", "bl", "br"]))


def dvc(repo: Path, *args: str, env: dict | None = None, check: bool = True):
    return run([str(BIN / "dvc"), *args], repo, env, check=check)


def edgeqat(repo: Path, *args: str, env: dict | None = None, check: bool = True):
    return run([str(BIN / "edgeqat"), *args], repo, env, check=check)


def git(repo: Path, *args: str):
    return run([*GIT, *args], repo)


@pytest.fixture(scope="module")
def team(tmp_path_factory, mlflow_server):
    """Clone A of a bare origin, with a local-folder DVC remote; the data is DVC-tracked."""
    root = tmp_path_factory.mktemp("team")
    origin, remote = root / "origin.git", root / "dvc-remote"
    run(["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)], root)
    a = make_pipeline_repo(root / "a", tiny_params(**{
        "prepare.source": "npz", "prepare.path": "data/raw/data.npz",
        "track.experiment": EXPERIMENT, "register.model_name": MODEL, **WITH_MIXED}))
    write_data(a, 240, seed=1)
    dvc(a, "add", "data/raw/data.npz")
    dvc(a, "remote", "add", "-d", "local", str(remote))  # the one documented command
    edgeqat(a, "dvc", "write")
    git(a, "add", "-A")
    git(a, "commit", "-q", "-m", "project")
    git(a, "branch", "-M", "main")
    git(a, "remote", "add", "origin", str(origin))
    git(a, "push", "-q", "-u", "origin", "main")
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    return {"root": root, "a": a, "origin": origin, "remote": remote, "env": env, "url": mlflow_server, "facts": {}}


def ci_run(repo: Path, env: dict, *args: str):
    t = time.monotonic()
    proc = edgeqat(repo, "ci", "run", "--push-git", *args, env=env, check=False)
    return proc, time.monotonic() - t


def clone(team, name: str) -> Path:
    dest = team["root"] / name
    run(["git", "clone", "-q", str(team["origin"]), str(dest)], team["root"])
    return dest


def registry(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_ci_run_retrains_on_new_data_registers_a_challenger_and_does_nothing_when_unchanged(team):
    a, env = team["a"], team["env"]
    first, t1 = ci_run(a, env)
    assert first.returncode == 0, first.stderr[-3000:]
    report1 = (a / "ci-report.md").read_text()
    assert "## Challenger vs champion: `team-classifier`" in report1 and "| challenger (v1) |" in report1
    assert "No champion yet" in report1
    client = registry(team["url"])
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "1"
    # the outputs are in the remote: a status against it finds nothing missing
    assert "new:" not in dvc(a, "status", "--cloud").stdout
    assert run(["git", "status", "--porcelain"], a).stdout.strip() in ("", "?? ci-report.md")
    assert "edgeqat ci" in run(["git", "log", "-1", "--format=%s"], a).stdout

    # new data, committed and pushed as a team member would
    write_data(a, 320, seed=2)
    dvc(a, "add", "data/raw/data.npz")
    git(a, "add", "data/raw/data.npz.dvc")
    git(a, "commit", "-q", "-m", "more data")
    dvc(a, "push")
    git(a, "push", "-q")

    second, t2 = ci_run(a, env)
    assert second.returncode == 0, second.stderr[-3000:]
    report2 = (a / "ci-report.md").read_text()
    assert "prepare" in report2.split("Stages run:")[1].split("\n")[0]
    assert "## Metrics against `HEAD`" in report2 and "metrics/headline.json" in report2 and "test_images" in report2
    assert "| challenger (v2) |" in report2
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    # the version points at a LoggedModel of the run that produced it (MLflow's SQL store keeps the
    # link in the version's source, models:/<model id>)
    v2 = client.get_model_version(MODEL, "2")
    model_id = v2.source.removeprefix("models:/")
    assert client.get_logged_model(model_id).source_run_id == v2.run_id
    # the run says what started it, and traces its data to the .dvc file the team committed
    mlrun = client.get_run(v2.run_id)
    assert mlrun.info.run_name.startswith("ci manual "), mlrun.info.run_name
    raw = json.loads(mlrun.inputs.dataset_inputs[0].dataset.source)["raw"]
    dvc_md5 = yaml.safe_load((a / "data" / "raw" / "data.npz.dvc").read_text())["outs"][0]["md5"]
    assert raw["dvc_file"] == "data/raw/data.npz.dvc" and raw["dvc_hash"] == dvc_md5

    third, t3 = ci_run(a, env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert stages_run(third.stderr + third.stdout) == []
    assert "Stages run: none" in (a / "ci-report.md").read_text()
    assert [m.version for m in client.search_model_versions(f"name='{MODEL}'")].count("3") == 0
    team["facts"].update(ci_seconds=(round(t1), round(t2), round(t3)))
    print(f"\nci run: first {t1:.0f} s, new data {t2:.0f} s, nothing changed {t3:.1f} s")


def test_a_second_clone_pulls_and_has_nothing_to_rerun(team):
    b = clone(team, "b")
    dvc(b, "pull")
    status = dvc(b, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    again = dvc(b, "repro", env=team["env"])
    assert stages_run(again.stdout) == []
    diff = dvc(b, "metrics", "diff", "HEAD~1", "--md")
    assert diff.stdout.startswith("| Path") and "metrics/" in diff.stdout
    print(f"\nclone B: {len(stages_run(again.stdout))} stages re-run after dvc pull")
    plots = dvc(b, "plots", "show", "--json").stdout
    assert "Accuracy per epoch" in plots and "Confusion matrix" in plots

    # a forced re-run of train writes the same bytes: nothing after it re-runs
    forced = dvc(b, "repro", "-f", "-s", "train", env=team["env"])
    assert stages_run(forced.stdout) == ["train"]
    after = dvc(b, "repro", env=team["env"])
    assert stages_run(after.stdout) == []
    assert run(["git", "status", "--porcelain"], b).stdout.strip() == ""
    team["b"] = b


def test_replacing_the_pretrained_model_file_marks_train_changed(team):
    b = team["b"]
    (b / "pretrained").mkdir()
    shutil.copy(b / "models" / "fp32.keras", b / "pretrained" / "mine.keras")
    p = yaml.safe_load((b / "params.yaml").read_text())
    p["train"]["from_model"] = "pretrained/mine.keras"
    (b / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    # dvc.yaml does not track the file yet: the stage refuses to run rather than go stale
    stale = dvc(b, "repro", "train", env=team["env"], check=False)
    assert stale.returncode != 0 and "edgeqat dvc write" in stale.stderr + stale.stdout
    edgeqat(b, "dvc", "write")
    assert "pretrained/mine.keras" in yaml.safe_load((b / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    dvc(b, "repro", "train", env=team["env"])
    assert "train" not in dvc(b, "status", "train").stdout
    (b / "pretrained" / "mine.keras").write_bytes(b"another model, same name")
    status = dvc(b, "status", "train")
    assert "train:" in status.stdout and "modified:" in status.stdout and "pretrained/mine.keras" in status.stdout


def test_make_demo_in_a_fresh_clone_leaves_git_clean_and_a_clean_run(team):
    c = clone(team, "c")
    shutil.copy(REPO / "Makefile", c / "Makefile")
    git(c, "add", "Makefile")
    git(c, "commit", "-q", "-m", "Makefile")
    venv = Path(BIN).parent
    # -o: the venv exists already (the test runs in it); a demo would otherwise install into it
    proc = run(["make", "-o", f"{venv}/bin/edgeqat", "demo", f"VENV={venv}"], c,
               {"MLFLOW_TRACKING_URI": "", "EDGEQAT_LIVE_RUN": "1"})  # live, as a user's demo runs
    assert re.search(r"^variant +accuracy ", proc.stdout, re.M) and re.search(r"^qat_int8 +0\.\d{4} ", proc.stdout, re.M)
    # DVC skipped evaluate here, yet host latency is shown: the record committed with the results
    assert not (c / "logs" / "timings" / "evaluate.json").exists()
    assert re.search(r"^variant +accuracy .* p50 ms", proc.stdout, re.M), proc.stdout
    said = re.sub(r"\s+", " ", proc.stdout)  # the intro line is wrapped to the terminal's width
    assert "from reports/host_latency.json, measured when these models were built" in said, said[:3000]
    assert "p50 ms (host)" in (c / "reports" / "report.html").read_text()
    # it ends with what to do next: the UI, promote the version it registered, export
    assert re.search(r"edgeqat ui +#", proc.stdout) and re.search(r"edgeqat promote 1 +#", proc.stdout), proc.stdout
    assert re.search(r"edgeqat export +#", proc.stdout)
    assert run(["git", "status", "--porcelain"], c).stdout.strip() == ""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{c / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    # one run. The clone pulled every result from the DVC remote, so `dvc repro` ran no stage and
    # opened no live run: the demo's own `edgeqat stage track` logged the execution from the files.
    assert stages_run(proc.stdout + proc.stderr) == []
    assert len(runs) == 1 and runs[0].data.tags["git_dirty"] == "false"
    assert runs[0].data.tags["edgeqat.execution"].startswith("cli-") and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["git_commit"] == run(["git", "rev-parse", "HEAD"], c).stdout.strip()
    assert runs[0].info.end_time > runs[0].info.start_time
    team["c"] = c


def test_the_html_report_shows_the_table_and_every_image_in_a_browser(team, tmp_path):
    from selenium.webdriver.common.by import By

    from integration.browser import headless_chrome

    c = team["c"]
    page = c / "reports" / "report.html"
    assert "http" not in re.sub(r'href="#[^"]*"', "", page.read_text()).replace("http-equiv", "")  # no CDN, nothing remote
    summary = json.loads((c / "reports" / "summary.json").read_text())
    with headless_chrome(tmp_path) as driver:
        driver.get(page.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "table:first-of-type tr")
        names = [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]]
        assert sorted(names) == sorted(summary["variants"])
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 4  # Pareto, training curves, confusion matrix, device budgets
        for img in images:  # decoded and drawn: an embedded PNG that did not load has no natural size
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
        verdicts = driver.find_elements(By.CSS_SELECTOR, "td .pass, td .fail")
        assert len(verdicts) == len(summary["devices"])
        driver.save_screenshot(str(tmp_path / "report.png"))
    print(f"\nreport.html screenshot: {tmp_path / 'report.png'}")


def test_a_forced_rerun_of_every_stage_writes_the_same_bytes(team):
    c = team["c"]
    forced = dvc(c, "repro", "-f", env={"MLFLOW_TRACKING_URI": ""})
    assert sorted(stages_run(forced.stdout)) == sorted(s.name for s in STAGES)
    assert run(["git", "status", "--porcelain"], c).stdout.strip() == ""


def test_a_failing_required_device_is_tracked_as_failed_and_registers_nothing(team):
    a, env = team["a"], team["env"]
    client = registry(team["url"])
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))
    p = yaml.safe_load((a / "params.yaml").read_text())
    p["validate"].update(model="mixed", required_devices=["coral_edgetpu"])  # a float head on an int8-only TPU
    p["register"].update(variant="mixed")  # the registered file is the validated one (check-params)
    (a / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    proc = dvc(a, "repro", env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]  # under DVC a failed gate is a result: the run ends
    # preflight reads validate.required_devices too: it judges the QAT family as the int8 graph
    # (passes); the float head shows when validate runs the mixed file
    assert stages_run(proc.stdout) == ["preflight", "validate", "recommend", "report", "track", "register"]
    msg = proc.stderr + proc.stdout
    said = [ln for ln in msg.splitlines() if "GATE FAILED" in ln]
    assert len(said) == 1 and said[0].startswith("register: GATE FAILED, nothing registered")
    assert "coral_edgetpu" in said[0] and "edgeqat recommend --device coral_edgetpu" in said[0]
    assert json.loads((a / "metrics" / "headline.json").read_text())["gate_passed"] is False
    run_id = json.loads((a / "logs" / "mlflow_run.json").read_text())["run_id"]
    r = client.get_run(run_id)
    assert r.info.status == "FAILED" and r.data.tags["edgeqat.gate"] == "failed"
    assert "coral_edgetpu" in r.data.tags["edgeqat.gate.reasons"]
    assert r.data.metrics["validation/coral_edgetpu.passed"] == 0.0
    assert "Gate:" in r.data.tags["mlflow.note.content"] and "coral_edgetpu" in r.data.tags["mlflow.note.content"]
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before
    register = edgeqat(a, "stage", "register", env=env, check=False)
    assert register.returncode == 1, register.stderr  # a failed gate, not bad input (2)
    ci = edgeqat(a, "ci", "run", "--no-commit", env=env, check=False)  # the workflows' path: a report, exit 1
    assert ci.returncode == 1, ci.stderr[-2000:]
    report = (a / "ci-report.md").read_text()
    assert "**Device gate FAILED**" in report and "coral_edgetpu" in report
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before
