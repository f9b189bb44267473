"""The background runner behind the parallel canary: results, errors, cancellation, threads."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from scanner.ops.background import Background, Cancelled, split_threads


def test_result_and_thread_count_inside_the_job():
    seen = {}

    def job(check):
        check()
        seen["threads"] = torch.get_num_threads()
        return 41 + 1

    assert Background(job, threads=1).start().result() == 42
    assert seen["threads"] == 1


def test_errors_reraise_in_the_caller():
    def job(check):
        raise ValueError("inside the job")

    with pytest.raises(ValueError, match="inside the job"):
        Background(job, threads=1).start().result()


def test_cancel_stops_a_job_at_its_next_check():
    steps = []

    def job(check):
        for i in range(10_000):
            check()
            steps.append(i)
            time.sleep(0.001)
        return "finished"

    bg = Background(job, threads=1).start()
    time.sleep(0.05)
    bg.cancel()
    assert len(steps) < 10_000
    with pytest.raises(Cancelled):
        bg.result()
    assert not any(t.name == "scanner-background" and t.is_alive() for t in threading.enumerate())


def test_split_threads_halves_and_restores():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with split_threads(2) as share:
            assert share == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 4
        torch.set_num_threads(1)
        with split_threads(2) as share:  # never below one thread
            assert share == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
