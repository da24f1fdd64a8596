"""counter.py OUT [INTERVAL_S]: appends 1, 2, 3, ... (one per line) to OUT, like counter.c."""

import os
import sys
import time


def main() -> None:
    out = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    data = {i: str(i) * 3 for i in range(10000)}  # some heap the restore must bring back
    n = 0
    while True:
        n += 1
        assert data[n % 10000] == str(n % 10000) * 3
        os.write(fd, f"{n}\n".encode())
        time.sleep(interval)


if __name__ == "__main__":
    main()
