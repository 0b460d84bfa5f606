"""The rules around the component image and the docker runner that need no Docker engine: which
image a cluster gets (never the unpushed placeholder), what a container may be handed (a server
URL, files inside the pipeline root), and the Debian mirror the base image is built from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from edgeqat.adapters.kfp import containers, images
from edgeqat.components import DEFAULT_IMAGE
from edgeqat.config import Params, parse_params
from edgeqat.errors import EdgeqatError

EDGEQAT = Path(sys.executable).parent / "edgeqat"


@pytest.fixture()
def no_image_env(monkeypatch, tmp_path):
    monkeypatch.delenv(images.IMAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_image_comes_from_the_option_then_the_environment_then_make_image(no_image_env, monkeypatch):
    with pytest.raises(EdgeqatError, match="no component image for the cluster to pull: build it with `make image`"):
        images.resolve_image(None)
    (no_image_env / images.RECORD).parent.mkdir()
    (no_image_env / images.RECORD).write_text("edgeqat:0.1.0\n")
    assert images.resolve_image(None) == "edgeqat:0.1.0"
    monkeypatch.setenv(images.IMAGE_ENV, "registry.example/team/edgeqat:2")
    assert images.resolve_image(None) == "registry.example/team/edgeqat:2"
    assert images.resolve_image("registry.example/team/edgeqat:3") == "registry.example/team/edgeqat:3"


@pytest.mark.parametrize("where", ["option", "environment"])
def test_the_placeholder_image_is_refused(no_image_env, monkeypatch, where):
    if where == "environment":
        monkeypatch.setenv(images.IMAGE_ENV, DEFAULT_IMAGE)
    with pytest.raises(EdgeqatError, match=f"{DEFAULT_IMAGE}: the package's placeholder image, never pushed"):
        images.resolve_image(DEFAULT_IMAGE if where == "option" else None)


def test_a_package_naming_the_placeholder_is_refused_and_one_naming_an_image_is_not(tmp_path):
    committed = REPO / "pipelines" / "edge_pipeline.yaml"
    assert images.package_images(committed) == {DEFAULT_IMAGE}
    with pytest.raises(EdgeqatError, match="edge_pipeline.yaml: its tasks name the placeholder image"):
        images.check_package(committed)
    named = tmp_path / "p.yaml"
    named.write_text(committed.read_text().replace(DEFAULT_IMAGE, "registry.example/edgeqat:1"))
    images.check_package(named)


def test_compile_without_an_image_is_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != images.IMAGE_ENV}
    proc = subprocess.run([str(EDGEQAT), "pipeline", "compile", "--out", "p.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeqat: error: no component image"), proc.stderr
    assert "make image" in lines[0] and "--image" in lines[0] and "EDGEQAT_IMAGE" in lines[0]
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("uri", ["", "sqlite:///tmp/mlflow.db", "file:///tmp/mlruns", "mlruns"])
def test_the_docker_runner_needs_an_mlflow_server(uri):
    with pytest.raises(EdgeqatError, match="containers cannot reach a store that is a file on this machine"):
        containers.server_uri(uri)
    assert containers.server_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_docker_run_with_a_file_mlflow_store_is_one_clear_line_before_anything_runs(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    proc = subprocess.run([str(EDGEQAT), "pipeline", "run", "--local", "--docker", "--image", "edgeqat:never-built",
                           "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "containers cannot reach a store that is a file on this machine" in proc.stderr
    assert not (tmp_path / "kfp_local").exists() and not (tmp_path / "mlflow.db").exists()


def test_files_handed_to_containers_must_lie_in_the_pipeline_root(tmp_path):
    root = tmp_path / "kfp"
    (root / "data").mkdir(parents=True)
    digits = Params()  # prepare.path is set (data/raw) but digits never reads it
    assert containers.container_params(digits, root, tmp_path) is digits
    raw = Params().model_dump()
    raw["prepare"].update(source="npz", path="kfp/data/site.npz")
    inside = containers.container_params(parse_params(raw), root, tmp_path)
    assert inside.prepare.path == str(root / "data" / "site.npz")  # absolute: the container's cwd is elsewhere
    raw["prepare"]["path"] = "data/site.npz"
    with pytest.raises(EdgeqatError, match=r"prepare\.path=data/site\.npz: a path on this machine, outside the pipeline root"):
        containers.container_params(parse_params(raw), root, tmp_path)
    raw["prepare"]["path"] = "kfp/../elsewhere.npz"  # resolved before the check
    with pytest.raises(EdgeqatError, match=r"prepare\.path"):
        containers.container_params(parse_params(raw), root, tmp_path)


@pytest.mark.skipif(os.getuid() != 0, reason="chown to the image's user needs root")
def test_the_pipeline_root_is_given_to_the_images_user(tmp_path):
    root = tmp_path / "kfp"
    user = containers.prepare_pipeline_root(root)
    assert user == "1000:1000" and root.stat().st_uid == 1000
    assert containers.runner_args(user) == {"network_mode": "host", "user": "1000:1000"}
    assert containers.runner_args("1234:1234")["environment"] == {"HOME": "/tmp"}


def test_a_task_without_executor_output_did_not_finish(tmp_path):
    for task in ("prepare", "train"):
        (tmp_path / task).mkdir()
    (tmp_path / "prepare" / "executor_output.json").write_text("{}")
    assert containers.unfinished_tasks(tmp_path) == ["train"]


def _mirror(apt: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "debian_mirror.py"), "--apt-dir", str(apt), *args],
                          capture_output=True, text=True)


def test_the_debian_mirror_is_read_from_apt_sources_in_both_formats(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("# deb http://commented.example/debian bookworm main\n"
                                      "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm-updates main\n")
    (apt / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb-src deb\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n")
    (apt / "sources.list.d" / "b.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    assert _mirror(apt).stdout.strip() == "http://two.example/debian"
    (apt / "sources.list").write_text("deb [ arch=amd64 ] http://one.example/debian/ bookworm main\n")
    assert _mirror(apt).stdout.strip() == "http://one.example/debian"
    proc = _mirror(apt, "--suite", "trixie")
    assert proc.returncode == 2 and "no enabled 'deb' source serves trixie main" in proc.stderr
    assert "EDGEQAT_DEBIAN_MIRROR" in proc.stderr


def test_no_host_is_written_into_the_image_scripts():
    import re

    for name in ("build_base_image.sh", "build_image.sh", "start_dockerd.sh", "debian_mirror.py"):
        assert re.findall(r"https?://[\w.-]+", (REPO / "scripts" / name).read_text()) == [], name
