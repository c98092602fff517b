"""The dashboard at GET /, in a real headless Chromium against spoold run as a subprocess.

One browser and one daemon serve the module (a token-guarded daemon has its own test).
What the page shows is read from the DOM; what its buttons did is read from the spool.
Screenshots at a phone's width and at 1920 px are saved under the test's tmp_path (and,
with SPOOLD_SHOTS=<folder>, copied there to look at).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, Plugins, base_config, free_port, records, wait_until
from helpers_api import folder_of
from test_e2e_cancel import write_plugins

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")  # fmt: skip
if not CHROMIUM or not os.access(CHROMEDRIVER, os.X_OK):
    pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium"
                " chromium-driver)", allow_module_level=True)  # fmt: skip

from selenium.common.exceptions import (  # noqa: E402  (only once selenium is known to be there)
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

TOKEN = "dash-token-42"
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)  # fmt: skip
# A task that never fires by itself in a test's lifetime: only Run now runs it.
TASK = {"name": "report", "cron": "0 3 1 1 *", "timezone": "Europe/Berlin",
        "job": {"type": "noop"}}  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="spoold-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_window_size(1280, 1000)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with the e2e plug-in types, one scheduled task, and the HTTP API."""
    workdir = tmp_path_factory.mktemp("dashboard")
    config = base_config(http={"host": "127.0.0.1", "port": free_port()},
                         jobTypes=Plugins(workdir).types, schedule=[TASK])  # fmt: skip
    daemon = DaemonProcess(workdir, config, []).wait_ready()
    yield daemon
    Plugins(workdir).release()
    assert daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.log()


@pytest.fixture
def page(browser: Any, served: DaemonProcess) -> Any:
    """The dashboard of `served`, opened afresh and loaded once."""
    browser.get("about:blank")  # the same address again would not load the page anew
    browser.get(url(served))
    wait_until(lambda: "spoold on" in text(browser, "h1") and "version" in text(browser, "about"))
    return browser


def url(daemon: DaemonProcess) -> str:
    """The page, polling every half second (the least it takes) to keep the tests quick."""
    return f"http://127.0.0.1:{daemon.config['http']['port']}/#every=0.5"


# ----- reading and using the page --------------------------------------------------------


def text(driver: Any, element_id_or_selector: str, visible: bool = False) -> str:
    """An element's text ('' if there is none, or with `visible`, if it is not shown), read
    in one step: the page rebuilds its panels at every poll, so an element found first and
    read later may be gone."""
    found = driver.execute_script(
        "const e = document.getElementById(arguments[0]) || document.querySelector(arguments[0]);"
        "return e && (!arguments[1] || e.getClientRects().length) ? e.textContent : '';",
        element_id_or_selector, visible)  # fmt: skip
    return str(found)


def rows(driver: Any, table_id: str) -> list[list[str]]:
    """The texts of a table's body cells, row by row (none for "No ... yet")."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
        ".filter(tr => !tr.querySelector('.empty'))"
        ".map(tr => [...tr.cells].map(td => td.textContent));", table_id)  # fmt: skip


def count(driver: Any, table_id: str, label: str) -> int | None:
    """The number beside `label` in one of the queue's two tables."""
    for row in rows(driver, table_id):
        if row[0] == label and row[1].isdigit():
            return int(row[1])
    return None


def click(driver: Any, label: str, within: str = "body") -> None:
    """Click the button whose aria-label is `label` (the first one in `within`) as a user
    does (the page is rebuilt at every poll: a button found may be replaced before the
    click lands)."""

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, f'{within} button[aria-label="{label}"]').click()
            return True
        except StaleElementReferenceException:
            return False

    wait_until(attempt, timeout=10)


def no_alert(driver: Any) -> bool:
    try:
        return not driver.switch_to.alert.text
    except NoAlertPresentException:
        return True


def screenshot(driver: Any, folder: Path, name: str, width: int) -> Path:
    """The whole page at `width` px wide as a PNG; the window is sized to the page's height."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height + 120, 8000))
    path = folder / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    copy_to = os.environ.get("SPOOLD_SHOTS")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copy_to) / path.name)
    return path


# ----- the tests --------------------------------------------------------------------------


def test_counts_change_as_files_are_dropped_and_a_pending_job_is_cancelled(page, served):
    wait_until(lambda: count(page, "folder-table", "pending/") is not None)
    before_pending = count(page, "folder-table", "pending/")
    before_done = count(page, "folder-table", "completed/")
    served.drop("low-waits.json", {"type": "noop", "id": "waits", "runAt": "2099-01-01T00:00:00Z"})
    served.drop("now.json", {"type": "noop", "id": "quick"})
    wait_until(lambda: count(page, "folder-table", "pending/") == before_pending + 1)
    wait_until(lambda: count(page, "folder-table", "completed/") == before_done + 1)
    assert count(page, "priority-table", "low") == 1
    wait_until(lambda: any(row[1] == "quick" for row in rows(page, "completed-table")))
    pending = wait_until(lambda: [r for r in rows(page, "pending-table") if r[0] == "waits"])
    assert pending[0][1] == "low" and "2099" in pending[0][2]

    click(page, "Cancel job waits (it moves to failed/)")
    wait_until(lambda: folder_of(served.spool, "waits") == "failed")
    record = next(r for r in records(served.spool, "failed") if r["id"] == "waits")
    assert record["error"] == "cancelled"
    wait_until(lambda: "Job waits cancelled" in text(page, "message"))
    assert "No API token is set" in text(page, "actions-note")
    wait_until(lambda: count(page, "folder-table", "pending/") == before_pending)


def test_retry_a_failed_job_from_the_page_and_see_it_complete(page, served):
    served.drop("flaky.json", {"type": "flaky", "id": "flaky-1", "failTimes": 1,
                               "maxAttempts": 1})  # fmt: skip
    failed = wait_until(lambda: [r for r in rows(page, "failed-table") if r[1] == "flaky-1"])
    assert failed[0][0] == "✗ failed"  # a word and a symbol, not only a colour
    assert "flaky failure 1 of 1" in failed[0][5]

    click(page, "Retry job flaky-1")
    wait_until(lambda: folder_of(served.spool, "flaky-1") == "completed")
    done = wait_until(lambda: [r for r in rows(page, "completed-table") if r[1] == "flaky-1"])
    assert done[0][0] == "✓ completed"
    wait_until(lambda: not [r for r in rows(page, "failed-table") if r[1] == "flaky-1"])
    record = next(r for r in records(served.spool, "completed") if r["id"] == "flaky-1")
    assert record["previousErrors"] == ["RuntimeError: flaky failure 1 of 1"]


def test_buttons_are_reachable_and_pressed_from_the_keyboard(page, served):
    served.drop("kbd.json", {"type": "fail", "id": "kbd-1", "maxAttempts": 1})
    wait_until(lambda: [r for r in rows(page, "failed-table") if r[1] == "kbd-1"])
    keys = ActionChains(page)
    for _ in range(60):
        keys.send_keys(Keys.TAB).perform()
        if page.switch_to.active_element.get_attribute("aria-label") == "Retry job kbd-1":
            break
    else:
        pytest.fail("Tab never reached the Retry button of kbd-1")
    keys.send_keys(Keys.ENTER).perform()
    wait_until(lambda: "Job kbd-1 retried" in text(page, "message"))
    # retried: it ran again and failed again, its first error kept
    wait_until(lambda: [r for r in records(served.spool, "failed")
                        if r["id"] == "kbd-1" and r.get("previousErrors")])  # fmt: skip


def test_run_now_twice_gives_two_runs(page, served):
    task_row = wait_until(lambda: [r for r in rows(page, "tasks-table") if r[0] == "report"])
    assert task_row[0][1] == "0 3 1 1 *"
    next_run = task_row[0][2]  # in the task's zone, then in the browser's
    assert re.fullmatch(r"\d{4}-01-01 03:00 Europe/Berlinyours: .*20\d\d.*", next_run), next_run
    runs_before = len(run_ids(served))

    click(page, "Run task report now")
    wait_until(lambda: len(run_ids(served)) == runs_before + 1)
    wait_until(lambda: "enqueued as job report.run-" in text(page, "message"))
    click(page, "Run task report now")  # at once: within the same second, often
    wait_until(lambda: len(run_ids(served)) == runs_before + 2, timeout=15)
    wait_until(lambda: [r for r in rows(page, "tasks-table")
                        if r[0] == "report" and r[4] == "✓ completed" and
                        r[5].startswith(f"{runs_before + 2} / 0")])  # fmt: skip


def run_ids(daemon: DaemonProcess) -> list[str]:
    return [r["id"] for r in records(daemon.spool, "completed") if ".run-" in r["id"]]


def test_an_invalid_config_edit_shows_on_the_page_until_fixed(page, served):
    good = served.config_path.read_text()
    try:
        served.config_path.write_text(good + "workers: [not, a, number\n")
        alert = wait_until(lambda: text(page, "config-error"), timeout=15)
        assert "Config error" in alert
        shown = text(page, "#config-error pre", visible=True)
        assert re.search(r"spoold\.yaml:\d+: not valid YAML", shown), shown
    finally:
        served.config_path.write_text(good)
    wait_until(lambda: not text(page, "config-error"), timeout=15)


def test_job_fields_holding_markup_show_as_text_and_never_run(page, served):
    script = "<script>window.__pwned = 1; alert('x')</script>"
    image = "<img src=x onerror=\"window.__pwned = 2; alert('y')\">"
    served.drop("s.json", {"type": "fail", "id": "evil-script", "message": script,
                           "maxAttempts": 1, "note": image})  # fmt: skip
    served.drop("i.json", {"type": "fail", "id": "evil-image", "message": image,
                           "maxAttempts": 1})  # fmt: skip

    def evil_errors() -> dict[str, str] | None:
        found = {r[1]: r[5] for r in rows(page, "failed-table") if r[1].startswith("evil-")}
        return found if len(found) == 2 else None

    errors = wait_until(evil_errors)
    assert errors == {"evil-script": f"ValueError: {script}", "evil-image": f"ValueError: {image}"}

    page.find_element(By.ID, "find-input").send_keys("evil-script", Keys.ENTER)
    found = wait_until(lambda: text(page, "found") if "failed/" in text(page, "found") else None)
    assert json.loads(text(page, "#found pre"))["note"] == image
    assert "Job evil-script is in failed/" in found
    assert (
        page.execute_script("return document.querySelectorAll('main img, main script').length") == 0
    )
    assert page.execute_script("return window.__pwned") is None
    assert no_alert(page)


def test_find_a_job_then_cancel_and_retry_it_there(page, served):
    served.drop("later.json", {"type": "noop", "id": "found-1", "runAt": "2099-01-01T00:00:00Z"})
    wait_until(lambda: folder_of(served.spool, "found-1") == "pending")
    page.find_element(By.ID, "find-input").send_keys("found-1", Keys.ENTER)
    wait_until(lambda: "Job found-1 is in pending/" in text(page, "found"))
    assert json.loads(text(page, "#found pre"))["runAt"].startswith("2099")

    click(page, "Cancel job found-1 (it moves to failed/)", within="#found")
    wait_until(lambda: "Job found-1 is in failed/" in text(page, "found"))  # it follows the job
    assert folder_of(served.spool, "found-1") == "failed"
    click(page, "Retry job found-1", within="#failed-table")  # a button elsewhere on the page
    wait_until(lambda: "Job found-1 is in pending/" in text(page, "found"))
    assert folder_of(served.spool, "found-1") == "pending"


def test_a_job_that_is_not_there_is_said_so(page, served):
    page.find_element(By.ID, "find-input").send_keys("no-such-job", Keys.ENTER)
    wait_until(lambda: "no job with id 'no-such-job'" in text(page, "found"))
    page.find_element(By.ID, "find-input").clear()
    page.find_element(By.ID, "find-input").send_keys("bad id/..", Keys.ENTER)
    wait_until(lambda: "is not a job id" in text(page, "found"))
    assert "version" in text(page, "about")  # still polling, still serving


def test_running_and_waiting_jobs_show_how_long(page, served):
    for n in (1, 2):  # as many as the daemon has workers
        served.drop(f"slow{n}.json", {"type": "slow", "id": f"slow-{n}"})
    wait_until(lambda: len(running(page)) == 2)
    served.drop("wait.json", {"type": "noop", "id": "waiting-1"})
    assert running(page)["slow-1"][:2] == ["slow", "normal"]  # type, priority
    wait_until(lambda: re.fullmatch(r"[1-9][0-9]* s", running(page)["slow-1"][3]))  # for 1 s+
    waiting = wait_until(lambda: [r for r in rows(page, "pending-table") if r[0] == "waiting-1"])
    assert waiting[0][2].startswith("due, waiting ")
    wait_until(lambda: re.match(r"[1-9][0-9]* s \(due since ", text(page, "oldest-due")))

    Plugins(served.workdir).release()
    wait_until(lambda: not running(page) and text(page, "oldest-due") == "none due")
    assert folder_of(served.spool, "waiting-1") == "completed"


def running(driver: Any) -> dict[str, list[str]]:
    """The running table: job id → type, priority, attempt, running for, progress."""
    return {row[0]: row[1:] for row in rows(driver, "running-table")}


def test_screenshots_at_a_phones_width_and_at_1920(page, served, tmp_path):
    for width in (390, 1920):
        path = screenshot(page, tmp_path, "dashboard", width)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
        overflow = page.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways at {width} px by {overflow} px"
    page.set_window_size(1280, 1000)


def test_with_a_token_the_page_asks_for_it_once_and_works(browser, tmp_path):
    config = base_config(http={"host": "127.0.0.1", "port": free_port(), "token": TOKEN})
    daemon = DaemonProcess(tmp_path, config, []).wait_ready()
    try:
        browser.get(url(daemon))
        form = browser.find_element(By.ID, "token-form")
        wait_until(form.is_displayed)
        assert "version" not in text(browser, "about")  # nothing loaded without the token
        field = browser.find_element(By.ID, "token-input")
        field.send_keys("wrong", Keys.ENTER)
        wait_until(lambda: "refused that token" in text(browser, "token-why"))
        field.send_keys(TOKEN, Keys.ENTER)
        wait_until(lambda: not form.is_displayed() and "version" in text(browser, "about"))
        daemon.drop("t.json", {"type": "noop", "id": "with-token"})
        wait_until(lambda: [r for r in rows(browser, "completed-table") if r[1] == "with-token"])
        assert text(browser, "actions-note") == ""  # the token is set and the page has it

        browser.refresh()  # asked once: the tab keeps it
        wait_until(lambda: "version" in text(browser, "about"))
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        screenshot(browser, tmp_path, "token", 1280)

        # a job that runs and fails for good (nothing listens on that port)
        closed = f"http://127.0.0.1:{free_port()}/hook"
        daemon.drop("x.json", {"type": "webhook", "id": "refused", "url": closed,
                               "maxAttempts": 1})  # fmt: skip
        retry = 'button[aria-label="Retry job refused"]'
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, retry))
        assert daemon.stop() == 0, daemon.log()
        # the daemon is gone: the buttons say so, and why
        wait_until(lambda: "does not answer" in text(browser, "actions-note"))
        button = browser.find_element(By.CSS_SELECTOR, retry)
        assert not button.is_enabled() and "does not answer" in button.get_attribute("title")
    finally:
        browser.execute_script("sessionStorage.clear()")
        daemon.kill()


def test_a_running_job_shows_its_progress_as_text_and_is_cancelled_from_the_page(browser, tmp_path):
    port = free_port()
    config = base_config(http={"host": "127.0.0.1", "port": port}, workers=1,
                         jobTypes=write_plugins(tmp_path))  # fmt: skip
    daemon = DaemonProcess(tmp_path, config, []).wait_ready()
    try:
        browser.get("about:blank")
        browser.get(url(daemon))
        image = '<img src=x onerror="window.__pwned = 3">'
        daemon.drop("p.json", {"type": "patient", "id": "busy", "fraction": 0.4, "text": image})
        shown = wait_until(lambda: running(browser).get("busy"))
        wait_until(lambda: running(browser)["busy"][4] == f"40% · {image}")
        assert shown[:2] == ["patient", "normal"]

        click(browser, "Cancel job busy (it is asked to stop)", within="#running-table")
        wait_until(lambda: folder_of(daemon.spool, "busy") == "failed")
        record = next(r for r in records(daemon.spool, "failed") if r["id"] == "busy")
        assert record["error"] == "cancelled" and record["attempts"] == 1
        wait_until(lambda: "Job busy asked to stop" in text(browser, "message"))
        wait_until(lambda: not running(browser))
        assert browser.execute_script("return window.__pwned") is None
        assert browser.execute_script("return document.querySelectorAll('main img').length") == 0
        assert daemon.stop() == 0
    finally:
        daemon.kill()
