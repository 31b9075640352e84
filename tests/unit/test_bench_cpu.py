"""The benchmarks' and load tests' server CPU reading: every thread's, finer than the
clock tick."""

from __future__ import annotations

import subprocess
import sys

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
def worker():
    while True:
        burn(asked.get())
        done.put(True)
threading.Thread(target=worker, daemon=True).start()
for _ in sys.stdin:
    before = time.process_time()
    asked.put(0.003); burn(0.002); done.get()
    print(time.process_time() - before, flush=True)
"""


def test_cpu_seconds_counts_every_thread_to_the_millisecond() -> None:
    """What another process burns between two readings, as its own CPU clock counts it
    (``/proc``'s stat would give 0 or 10 ms: clock ticks)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
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
