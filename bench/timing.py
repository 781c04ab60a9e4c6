"""Timing several callables against each other on a shared machine: called in turn, round after
round, so that a change of machine load hits all of them alike."""

from __future__ import annotations

import time

import numpy as np


def interleaved(fns: dict, rounds: int, warmup: int) -> dict:
    """Per named function: wall seconds and CPU seconds per call, called in turn (order flipped every round).

    CPU time (``time.process_time``; every function runs on the calling thread) is what the call
    itself costs; wall time also holds whatever else the shared machine did meanwhile.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            c0, t0 = time.process_time(), time.perf_counter()
            fns[n]()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    return {n: (np.asarray(wall[n]), np.asarray(cpu[n])) for n in names}
