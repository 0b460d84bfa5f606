"""Promotion from the MLflow UI, clicked in a real browser.

Headless Debian Chromium (`make browser`) drives the real MLflow 3.17 UI of a real
`mlflow server`; the real `edgeqat webhook serve` process receives the server's signed
webhooks. The tiny model is built once, by this process, with test_registry's fixtures
(the server boots meanwhile); one browser session serves every step. Tests run in file
order and share the registered model. Screenshots of each step go to $EDGEQAT_SCREENSHOTS
(default: a `screenshots/` folder under the test's tmp dir); a failing step also leaves
its page source there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgeqat.config import RegisterConfig
from edgeqat.io import read_json, sha256_file
from integration.browser import headless_chrome
from integration.conftest import BIN, free_port, run, stop_process_group
# Fixtures: the webhook-enabled server, the tiny build it boots beside, a Registry on it.
from integration.test_registry import _track_register, _workspace, built, reg, server_proc, url, wait_for  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "edgeqat-ui"
ALIAS = "champion"
SECRET = "ui-webhook-secret-0123456789"
# validate required only sim-pi; the registry requires sim-m4 too, which the "bad" execution fails
CFG = RegisterConfig(model_name=NAME, experiment="it-ui", max_accuracy_drop=0.5, chance_margin=0.0,
                     required_devices=["sim-m4", "sim-pi"])
SEND_FAILED = "Failed to send webhook to"  # what mlflow/webhooks/delivery.py logs when a delivery is lost


def say(request, msg: str) -> None:
    """A line on the terminal even under -q and output capture."""
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(msg, flush=True)


@pytest.fixture(scope="module", autouse=True)
def wall_time(request):
    start = time.monotonic()
    yield
    say(request, f"[ui-promotion] wall time {time.monotonic() - start:.1f} s")


# --- the receiver: a real `edgeqat webhook serve` process -----------------------------------


class ReceiverProcess:
    """`edgeqat webhook serve` on a fixed loopback port, so a restart keeps the installed URL."""

    def __init__(self, mlflow_url: str, root: Path) -> None:
        self.root, self.port, self.proc = root, free_port(), None
        self.deploy, self.log = root / "deploy", root / "receiver.log"
        self.params = root / "params.yaml"
        self.params.write_text(json.dumps({"register": json.loads(CFG.model_dump_json())}))  # JSON is YAML
        self.env = {"MLFLOW_TRACKING_URI": mlflow_url, "EDGEQAT_WEBHOOK_SECRET": SECRET}
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "edgeqat"), "webhook", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--deploy-dir", str(self.deploy), "--params", str(self.params)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root,
                env={**os.environ, **self.env})
        wait_for(self._healthy, timeout=60, what=f"the receiver on {self.url}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"edgeqat webhook serve exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_process_group(self.proc)

    def install(self) -> None:
        run([str(BIN / "edgeqat"), "webhook", "install", "--url", self.url, "--params", str(self.params)],
            self.root, self.env)


@pytest.fixture(scope="module")
def receiver(url, tmp_path_factory):
    rcv = ReceiverProcess(url, tmp_path_factory.mktemp("receiver"))
    rcv.start()
    # Installed before any version exists: the server's first alias event then reads the
    # webhook list fresh (a list cached earlier would hide the webhook for the cache TTL).
    rcv.install()
    yield rcv
    rcv.stop()


@pytest.fixture(scope="module")
def versions(built, url, receiver, tmp_path_factory):
    """Registered once: a passing version, a gate-failing one (device sim-m4), a second passing one."""
    def version(key: str, which: str) -> dict:
        ws = _workspace(built, tmp_path_factory.mktemp(f"reg-{key}") / "ws", which)
        (ws / "metrics" / "ui.json").write_text(json.dumps({"execution": key}))  # each its own pipeline execution
        return _track_register(url, ws, CFG)

    return {key: version(key, which) for key, which in (("good", "good"), ("bad", "bad"), ("good2", "good"))}


# --- the browser ---------------------------------------------------------------------------


class UI:
    """One Chromium session on the MLflow UI; each step leaves a screenshot, a failing one its page too."""

    def __init__(self, driver, mlflow_url: str, shots: Path) -> None:
        self.driver, self.url, self.shots, self.n = driver, mlflow_url, shots, 0

    @contextmanager
    def step(self, name: str):
        self.n += 1
        stem = self.shots / f"{self.n:02d}-{name}"
        try:
            yield
        except BaseException:
            self.driver.save_screenshot(f"{stem}-FAILED.png")
            Path(f"{stem}-FAILED.html").write_text(self.driver.page_source)
            raise
        self.driver.save_screenshot(f"{stem}.png")

    def wait(self, timeout: float = 30):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # React may re-render a node between finding and reading it: look again.
        return WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))

    def open_version(self, version: str):
        """The version page freshly loaded from the server, once its alias editor (rendered with the
        version's aliases) is there. Loaded from blank: a hash-route change would leave the previous
        version's editor on screen for a moment, and a click would land on it."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        self.driver.get("about:blank")
        self.driver.get(f"{self.url}/#/models/{NAME}/versions/{version}")
        return self.wait().until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, "[data-component-id*='modelversionviewaliaseditor']")))

    def add_alias(self, version: str, alias: str = ALIAS) -> None:
        """What a person does: the alias editor, type the alias, Enter, Save aliases."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support import expected_conditions as EC

        self.open_version(version).click()
        dialog = self.wait().until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role='dialog']")))
        box = dialog.find_element(By.TAG_NAME, "input")
        box.send_keys(alias, Keys.ENTER)
        self.wait().until(EC.element_to_be_clickable(
            (By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Save aliases']"))).click()
        self.wait().until(EC.invisibility_of_element_located((By.CSS_SELECTOR, "[role='dialog']")))

    def shown_aliases(self, version: str) -> set[str]:
        """The alias tags the version page shows ("@ champion" -> "champion")."""
        from selenium.webdriver.common.by import By

        self.open_version(version)
        tags = self.wait().until(lambda d: [  # a list, so an empty page is still an answer
            {t.text.lstrip("@").strip() for t in d.find_elements(By.CSS_SELECTOR, "[data-component-id*='modelversionaliastag']")}])
        return tags[0] - {""}


@pytest.fixture(scope="module")
def ui(request, server_proc, tmp_path_factory):
    """Set up before the build (it needs only the server's address): a missing browser fails at once."""
    tmp = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("EDGEQAT_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    say(request, f"[ui-promotion] screenshots in {shots}")
    with headless_chrome(tmp) as driver:
        yield UI(driver, server_proc["url"], shots)


# --- checks -----------------------------------------------------------------------------------


def deployed_version(receiver) -> str | None:
    path = receiver.deploy / "export.json"  # written atomically by the receiver
    return read_json(path)["version"] if path.exists() else None


def assert_deployed(receiver, reg, version: str, built) -> None:
    """export.json names the version and the registered file's sha256; the shipped file has it."""
    registered = sha256_file(built["dir"] / "tflite" / "qat_int8.tflite")
    assert reg.version(NAME, version)["tags"]["sha256"] == registered
    info = read_json(receiver.deploy / "export.json")
    assert (info["model_name"], info["version"], info["sha256"]) == (NAME, version, registered)
    assert sha256_file(receiver.deploy / info["file"]) == registered


def champion_actions(reg, version: str) -> list[str]:
    return [h["action"] for h in reg.history(NAME) if h.get("alias") == ALIAS and h["version"] == version]


# --- tests ------------------------------------------------------------------------------------


def test_champion_added_in_the_ui_is_exported_by_the_receiver(ui, reg, receiver, versions, built):
    good = versions["good"]["version"]
    assert reg.alias_version(NAME, ALIAS) is None
    with ui.step(f"champion-on-v{good}"):
        ui.add_alias(good)
        wait_for(lambda: deployed_version(receiver) == good, what=f"the receiver to export version {good}")
        assert_deployed(receiver, reg, good, built)
        assert reg.alias_version(NAME, ALIAS) == good
        assert champion_actions(reg, good)[-2:] == ["ui", "deployed"]
        assert ALIAS in ui.shown_aliases(good)


def test_a_failing_champion_added_in_the_ui_is_reverted(ui, reg, receiver, versions, built):
    good, bad = versions["good"]["version"], versions["bad"]["version"]
    assert reg.alias_version(NAME, ALIAS) == good
    with ui.step(f"champion-on-failing-v{bad}"):
        ui.add_alias(bad)
        # `rejected` is recorded only if the alias really reached the failing version.
        wait_for(lambda: "rejected" in champion_actions(reg, bad) and reg.alias_version(NAME, ALIAS) == good,
                 what="the receiver to revert the champion")
        # The receiver reverts first and annotates after (devices must never be offered the
        # failing model meanwhile), so the tag may land a moment after the revert.
        wait_for(lambda: "edgeqat.rejected" in reg.version(NAME, bad)["tags"],
                 what=f"the receiver to tag version {bad} with why it was rejected")
        assert "device 'sim-m4' failed: arena 300 KB > 256 KB" in reg.version(NAME, bad)["tags"]["edgeqat.rejected"]
        assert "revert" in champion_actions(reg, good)
    with ui.step(f"v{bad}-reloaded-without-champion"):
        assert ALIAS not in ui.shown_aliases(bad)
    with ui.step(f"v{good}-champion-again"):
        assert ALIAS in ui.shown_aliases(good)
        assert_deployed(receiver, reg, good, built)  # the failing version was never exported


def test_a_restarted_receiver_catches_up_with_a_move_made_while_it_was_down(request, ui, reg, receiver, versions,
                                                                              server_proc, built):
    good, good2 = versions["good"]["version"], versions["good2"]["version"]
    assert reg.alias_version(NAME, ALIAS) == good and deployed_version(receiver) == good
    receiver.stop()
    lost = server_proc["log"].read_text().count(SEND_FAILED)
    with ui.step(f"champion-on-v{good2}-receiver-down"):
        ui.add_alias(good2)
        wait_for(lambda: reg.alias_version(NAME, ALIAS) == good2, what=f"MLflow to put {ALIAS} on {good2}")
        # MLflow retries a delivery 3 times (~6 s of backoff), then gives up: once it has, only
        # a catch-up on start can see this move.
        wait_for(lambda: server_proc["log"].read_text().count(SEND_FAILED) > lost, timeout=45,
                 what="the server to give up delivering the move")
        assert deployed_version(receiver) == good
    with ui.step(f"v{good2}-champion-after-catch-up"):
        started = time.monotonic()
        receiver.start()
        wait_for(lambda: deployed_version(receiver) == good2, timeout=20, what=f"the restarted receiver to export {good2}")
        say(request, f"[ui-promotion] catch-up delay after the receiver's restart: {time.monotonic() - started:.1f} s")
        assert_deployed(receiver, reg, good2, built)
        assert reg.alias_version(NAME, ALIAS) == good2
        assert ALIAS in ui.shown_aliases(good2)


# --- the run page -----------------------------------------------------------------------------


def _on_first_screen(driver, keys: list[str]) -> dict[str, bool]:
    """Whether the chart of each metric key has its title within the window, unscrolled (the UI
    titles a chart with the key's last part and keeps the whole key as the title attribute)."""
    return driver.execute_script("""
        const out = {};
        for (const k of arguments[0]) {
          const el = document.querySelector(`h4[title="${k}"]`), r = el && el.getBoundingClientRect();
          out[k] = !!r && r.width > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
        }
        return out;""", keys)


def test_the_run_page_opens_on_the_headline_and_the_training_curves(ui, versions, url):
    """The run's Model metrics tab: the headline's charts, then the FP32 baseline's curves, on the
    first screen (1400x1000); the experiment's runs table, opened as edgeqat links it, shows
    accuracy, size and the gate."""
    from edgeqat.lifecycle.tracking import experiment_page, get_run

    run_id = versions["good"]["tracked"]["run_id"]
    exp_id = get_run(run_id, url).info.experiment_id
    keys = ["headline/accuracy", "headline/size_kib", "headline/devices_passed",
            "training/baseline/train.loss", "training/baseline/train.val_accuracy"]
    with ui.step("run-page-model-metrics"):
        ui.driver.get("about:blank")
        ui.driver.get(f"{url}/#/experiments/{exp_id}/runs/{run_id}/model-metrics")
        ui.wait(60).until(lambda d: all(_on_first_screen(d, keys).values()))
        assert ui.driver.find_elements("css selector", "h4[title^='training/']")  # curves, not only the headline
        # drawn: the curve charts hold plotted lines
        ui.wait(30).until(lambda d: len(d.find_elements("css selector", "svg .scatterlayer .trace")) >= 2)
    with ui.step("runs-table-with-headline-columns"):
        ui.driver.get("about:blank")
        ui.driver.get(experiment_page(url, exp_id))
        columns = ["metrics.`headline/accuracy`", "metrics.`headline/size_kib`", "metrics.`headline/devices_passed`",
                   "tags.`edgeqat.gate`"]
        ui.wait(60).until(lambda d: all(d.find_elements("css selector", f'.ag-header-cell[col-id="{c}"]') for c in columns))
        cells = ui.driver.find_elements("css selector", f'.ag-cell[col-id="{columns[0]}"]')
        assert {c.text for c in cells} == {"0.25"}, [c.text for c in cells]  # the runs' accuracy, in the table
