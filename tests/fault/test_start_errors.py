"""A file system's surprise at start is a one-line reason, not a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import base_config, spoold_cli


def test_an_unusable_node_lock_ends_the_start_with_one_line(tmp_path: Path) -> None:
    lock = tmp_path / "spool" / "running" / ".node-local.lock"
    lock.mkdir(parents=True)  # a folder where the lock file goes: open() answers EISDIR
    (tmp_path / "spoold.yaml").write_text(yaml.safe_dump(base_config()))
    result = spoold_cli("run", "--config", "spoold.yaml", cwd=tmp_path)
    print(f"injected: a folder at {lock}; found: exit {result.returncode}, {result.stderr!r}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [reason] = [line for line in result.stderr.splitlines() if line.startswith("spoold: ")]
    assert str(lock) in reason and "EISDIR" in reason
    assert "put the spool on a local disk" in reason
