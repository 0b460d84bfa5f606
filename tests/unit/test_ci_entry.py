"""The CI entry point's pieces that need no pipeline run (tests/integration/test_team_workflow.py
runs the whole of it against a bare origin, a DVC remote and a real MLflow server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from edgeqat.adapters.ci import imports, publish_on_github, stages_in


def test_imported_data_is_found_by_its_deps(tmp_path):
    (tmp_path / ".dvc").mkdir()  # DVC's own folder is not a .dvc file
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.dvc").write_text("outs:\n- md5: abc.dir\n  path: raw\n")  # dvc add
    (tmp_path / "data" / "site.dvc").write_text(  # dvc import-url
        "deps:\n- path: s3://bucket/site\n  etag: x\nouts:\n- md5: def.dir\n  path: site\n")
    assert imports(tmp_path) == [tmp_path / "data" / "site.dvc"]


def test_stages_are_read_from_dvc_output():
    out = "Running stage 'prepare':\n> edgeqat stage prepare\nStage 'train' didn't change, skipping\nRunning stage 'qat':\n"
    assert stages_in(out) == ["prepare", "qat"]


def test_the_report_goes_to_the_job_summary_and_the_commit(tmp_path, monkeypatch):
    got = {}

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got["path"], got["auth"] = self.path, self.headers["Authorization"]
            got["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.handle_request, daemon=True).start()
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/edgeqat")
    monkeypatch.setenv("GITHUB_SHA", "0123abcd")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    publish_on_github("# edgeqat CI\n\n| a | b |\n")
    server.server_close()
    assert summary.read_text().startswith("# edgeqat CI")
    assert got == {"path": "/repos/team/edgeqat/commits/0123abcd/comments", "auth": "Bearer t0ken",
                   "body": {"body": "# edgeqat CI\n\n| a | b |\n"}}


def _dvc_repo(path):
    import subprocess
    import sys
    from pathlib import Path

    dvc = str(Path(sys.executable).parent / "dvc")
    path.mkdir()
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return lambda *args: subprocess.run([dvc, *args], cwd=path, check=True, capture_output=True, text=True)


def test_refresh_updates_an_import_url_whose_source_gained_data(tmp_path):
    """`--refresh-data` on `dvc import-url` data: the .dvc file takes the source's new content."""
    import yaml

    from edgeqat.adapters.ci import refresh_imports

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "a.txt").write_text("first images")
    dvc = _dvc_repo(tmp_path / "proj")
    (tmp_path / "proj" / "data").mkdir()
    dvc("import-url", str(bucket), "data/raw")
    before = yaml.safe_load((tmp_path / "proj" / "data" / "raw.dvc").read_text())["outs"][0]["md5"]
    (bucket / "b.txt").write_text("new images")
    refreshed, note = refresh_imports(tmp_path / "proj")
    assert refreshed == ["data/raw.dvc"] and note == ""
    after = yaml.safe_load((tmp_path / "proj" / "data" / "raw.dvc").read_text())["outs"][0]["md5"]
    assert after != before and (tmp_path / "proj" / "data" / "raw" / "b.txt").read_text() == "new images"


def test_refresh_with_data_added_in_the_repository_says_a_schedule_cannot_find_new_data(tmp_path):
    from edgeqat.adapters.ci import refresh_imports

    dvc = _dvc_repo(tmp_path / "proj")
    (tmp_path / "proj" / "data").mkdir()
    (tmp_path / "proj" / "data" / "raw.txt").write_text("images")
    dvc("add", "data/raw.txt")
    refreshed, note = refresh_imports(tmp_path / "proj")
    assert refreshed == [] and "dvc add" in note and "push workflow" in note
