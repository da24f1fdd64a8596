"""pythreads.py OUT: Python threads in several states, reporting progress to OUT.

Lines are "KEY n=N ..." where N counts up by one per KEY (no gap, no repeat after a restore):
  worker-0   hashes data in a loop (holds and releases the GIL)
  worker-1   waits on a threading.Event with a timeout (futex with timeout)
  worker-2   takes items from a queue.Queue filled by main (condition variable)
  pool       main submits jobs to a ThreadPoolExecutor(4) and checks their results
  main       main loop
"""

import concurrent.futures
import hashlib
import os
import queue
import sys
import threading
import time

out_fd = -1
lock = threading.Lock()


def report(key: str, n: int, extra: str = "") -> None:
    os.write(out_fd, f"{key} n={n} {extra}\n".encode())


def hasher() -> None:
    local = threading.local()
    local.tag = "hasher"
    data = b"torpor" * 10000
    n = 0
    next_t = time.monotonic() + 0.05
    while True:
        data = hashlib.sha256(data).digest() * 2000
        if time.monotonic() >= next_t:
            next_t += 0.05
            n += 1
            report("worker-0", n, f"tag={local.tag}")


def waiter() -> None:
    ev = threading.Event()
    n = 0
    while True:
        ev.wait(0.05)
        n += 1
        report("worker-1", n)


def consumer(q: "queue.Queue[int]") -> None:
    n = 0
    while True:
        item = q.get()
        n += 1
        report("worker-2", n, f"item={item} ok={int(item == n)}")


def job(i: int) -> int:
    return sum(range(i * 1000))


def main() -> None:
    global out_fd
    out_fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    q: queue.Queue[int] = queue.Queue()
    threading.Thread(target=hasher, name="worker-0", daemon=True).start()
    threading.Thread(target=waiter, name="worker-1", daemon=True).start()
    threading.Thread(target=consumer, args=(q,), name="worker-2", daemon=True).start()
    pool = concurrent.futures.ThreadPoolExecutor(4)
    n = 0
    while True:
        n += 1
        futures = [pool.submit(job, i) for i in range(8)]
        ok = all(f.result(timeout=30) == job(i) for i, f in enumerate(futures))
        report("pool", n, f"ok={int(ok)}")
        q.put(n)
        report("main", n)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
