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
