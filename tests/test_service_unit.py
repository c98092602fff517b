"""contrib/spoold.service: systemd accepts it, it runs spoold the way notify.py speaks,
and its sandbox stays tight. systemd-analyze reads the unit offline: no systemd needs to
run (CI installs it; see .ci/run)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spoold.cli import build_parser
from spoold.config import Config

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "spoold.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def directives() -> dict[str, str]:
    """The unit's Key=value lines (the last one of a key wins, as in systemd)."""
    found = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            found[key.strip()] = value.strip()
    return found


def installed_copy(tmp_path: Path) -> Path:
    """The unit as shipped, but starting this checkout's spoold: verify checks that the
    command exists, and the one the unit names need not exist here."""
    spoold = Path(sys.executable).parent / "spoold"
    if not spoold.exists():
        pytest.skip(f"no spoold entry point beside {sys.executable} (pip install -e .)")
    shipped = shlex.split(directives()["ExecStart"])[0]
    text = UNIT.read_text().replace(shipped, str(spoold))
    copy = tmp_path / "spoold.service"
    copy.write_text(text)
    return copy


def verify(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about the unit: a bad value or an unknown key is
    only a warning for systemd (exit 0), so every line naming the file counts."""
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    said = (result.stdout + result.stderr).splitlines()
    return [line for line in said if unit.name in line] + ([] if result.returncode == 0 else said)


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    assert verify(installed_copy(tmp_path)) == []


@needs_analyze
@pytest.mark.parametrize(
    ("good", "bad", "said"),
    [
        ("Type=notify", "Type=notfy", "Failed to parse service type"),
        ("WatchdogSec=", "WatchdogSecs=", "Unknown key 'WatchdogSecs'"),
    ],
)
def test_systemd_analyze_verify_finds_a_broken_unit(tmp_path, good, bad, said):
    """The check above can fail."""
    copy = installed_copy(tmp_path)
    copy.write_text(copy.read_text().replace(good, bad))
    assert any(said in line for line in verify(copy))


@needs_analyze
def test_the_sandbox_exposure_stays_low(tmp_path):
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(installed_copy(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    found = re.search(r"Overall exposure level for spoold.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def test_the_unit_runs_spoold_as_a_notify_service_with_a_watchdog():
    unit = directives()
    assert unit["Type"] == "notify"
    assert unit["NotifyAccess"] == "main"
    assert int(unit["WatchdogSec"]) >= 2  # pings come every half of it
    assert unit["Restart"] == "on-failure"
    assert unit["KillMode"] == "mixed"  # SIGTERM to spoold only; jobs get their grace
    assert int(unit["TimeoutStopSec"]) > Config().shutdown_grace


def test_the_sandbox_leaves_the_spool_writable():
    unit = directives()
    assert unit["ProtectSystem"] == "strict"
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["PrivateTmp"] == "yes" and unit["ProtectHome"] == "yes"
    assert unit["WorkingDirectory"] in unit["ReadWritePaths"].split()
    assert "AF_UNIX" in unit["RestrictAddressFamilies"]  # the notify socket


def test_the_start_command_is_one_spoold_parses():
    command = shlex.split(directives()["ExecStart"])
    assert command[0].endswith("/spoold")
    args = build_parser().parse_args(command[1:])
    assert args.config == "/etc/spoold/spoold.yaml"
    assert not hasattr(args, "handler")  # no sub-command: `spoold` runs the daemon
