"""sqlite3 inside BEGIN EXCLUSIVE: creates t.db with a table, starts an exclusive
transaction, inserts a row, prints "exclusive", waits for the file "commit", commits and
prints "committed"; then counts rows every 50 ms until "stop" appears."""

import os
import sqlite3
import time

db = sqlite3.connect("t.db", isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO t VALUES ('from the held transaction')")
with open("sqlite.log", "a", buffering=1) as log:
    log.write("exclusive\n")
    while not os.path.exists("commit"):
        time.sleep(0.05)
    db.execute("COMMIT")
    log.write("committed\n")
    while not os.path.exists("stop"):
        n = db.execute("SELECT count(*) FROM t").fetchone()[0]
        log.write(f"rows {n}\n")
        time.sleep(0.05)
