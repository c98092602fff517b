"""JobContext: the cancel request as a job sees it, hooks that wake a blocked job, and
the checks on a progress report."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from spoold.errors import JobCancelled
from spoold.jobcontext import JobContext


def test_a_cancel_is_seen_only_once_asked_and_check_raises_then() -> None:
    context = JobContext("j")
    assert not context.cancelled() and not context.cancel_seen
    context.check()  # nothing asked: goes on
    context.request_cancel()
    assert context.cancel_requested and not context.cancel_seen  # the job has not looked
    assert context.cancelled() and context.cancel_seen
    with pytest.raises(JobCancelled, match=r"^cancelled$"):
        context.check()


def test_hooks_run_once_at_the_cancel_or_at_once_if_it_was_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context, called = JobContext("j"), []

    def broken() -> None:
        raise RuntimeError("socket gone")

    context.on_cancel(lambda: called.append("first"))
    context.on_cancel(broken)
    with caplog.at_level(logging.ERROR, logger="spoold.jobcontext"):
        context.request_cancel()
        context.request_cancel()  # asked twice: hooks run once
    assert called == ["first"]
    assert "job j: a cancel hook failed" in caplog.text  # and the canceller went on
    context.on_cancel(lambda: called.append("late"))
    assert called == ["first", "late"]


def test_a_progress_text_is_one_line_of_at_most_200_characters() -> None:
    context = JobContext("j")
    context.progress(1, "line one\nline\ttwo " + "x" * 300)
    report = context.last_progress()
    assert report and report["fraction"] == 1.0
    assert report["text"] == ("line one line two " + "x" * 300)[:200]


@pytest.mark.parametrize("fraction", [-0.1, 1.01, float("nan"), float("inf"), "half", True, None])
def test_a_progress_fraction_outside_0_to_1_is_refused(fraction: Any) -> None:
    context = JobContext("j")
    context.progress(0.5, "before")
    with pytest.raises(ValueError, match="progress fraction must be"):
        context.progress(fraction, "text")
    report = context.last_progress()
    assert report and report["text"] == "before"  # the last good report stays
