"""The benchmarks' and load tests' server CPU reading: every thread's, finer than the
clock tick."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.sdk import cpu_seconds

# a "server": on each line it burns a few milliseconds on two threads, then answers with
# its own CPU clock's count of them; its threads live on between requests, as a server's
CHILD = """
import queue, sys, threading, time
def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
asked, done = queue.Queue(), queue.Queue()
SHORT = len(sys.argv) > 1  # each request's burn on a thread that then ends
def worker():
    while True:
        burn(asked.get())
        done.put(True)
threading.Thread(target=worker, daemon=True).start()
for _ in sys.stdin:
    before = time.process_time()
    if SHORT:
        t = threading.Thread(target=burn, args=(0.003,)); t.start(); t.join()
    else:
        asked.put(0.003); done.get()
    burn(0.002)
    print(time.process_time() - before, flush=True)
"""


@pytest.mark.parametrize("threads", ["kept", "ended"])
def test_cpu_seconds_counts_every_thread_to_the_millisecond(threads: str) -> None:
    """What another process burns between two readings, as its own CPU clock counts it
    (``/proc``'s stat would give 0 or 10 ms: clock ticks), a thread's that has ended
    since too (a sum of the live threads' counts would lose it: a reading could fall)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, *(["short"] if threads == "ended"
                                                             else [])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        for i in range(6):
            before = cpu_seconds(child.pid)
            child.stdin.write("go\n")
            child.stdin.flush()
            expected = float(child.stdout.readline())
            spent = cpu_seconds(child.pid) - before
            if i == 0:  # the child's start-up came with the first
                continue
            assert expected >= 0.005
            assert abs(spent - expected) < 0.001, (spent, expected)
    finally:
        child.kill()
        child.wait()
