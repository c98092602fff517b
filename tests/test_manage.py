"""The operator's verbs on a real spool (manage.py): finding a job wherever it is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spoold import manage
from spoold.names import make_stem
from spoold.spool import Spool


class RetriedWhileListed(Spool):
    """A real spool where, while failed/ is listed the first time, another process moves
    the job there back to pending/ (a retry): after pending/ was listed, before failed/."""

    moved = False

    def names(self, folder: str) -> list[str]:
        if folder == "failed" and not self.moved:
            self.moved = True
            for name in os.listdir(self.dirs["failed"]):
                os.rename(self.dirs["failed"] / name, self.dirs["pending"] / name)
        return super().names(folder)


def test_a_job_moving_against_the_search_order_is_still_found(tmp_path: Path) -> None:
    """Before, one pass missed it and GET /jobs/{id}, DELETE and spoold show answered 'no
    job with id' for a job that was there all along."""
    spool = RetriedWhileListed(tmp_path / "spool", durable=False)
    spool.ensure()
    stem = make_stem("normal", time.time_ns(), "mover")
    spool.write("failed", f"{stem}.json", b"{}")
    found = manage.locate(spool, "mover")
    assert spool.moved and found == manage.Found("pending", f"{stem}.json", stem)
    assert manage.locate(spool, "nobody") is None
