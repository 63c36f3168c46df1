"""Runs a command and prints, as one JSON line on stderr, what the whole process cost: wall
seconds, user and system CPU seconds (its children included) and peak RSS. Node cannot read a
child's rusage; the benches wrap every measured command (ours, tar, the Python reference) in this.
Usage: python3 rusage.py COMMAND [ARG...]   (the command's stdout passes through)
"""
import json
import resource
import subprocess
import sys
import time

# Children waited for before the command ran are not its cost: a launcher that execs into this
# interpreter (a version manager's shim) leaves the CPU of its own helper processes here.
before = resource.getrusage(resource.RUSAGE_CHILDREN)
start = time.monotonic()
code = subprocess.call(sys.argv[1:])
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
user = usage.ru_utime - before.ru_utime
system = usage.ru_stime - before.ru_stime
report = {
    "exit": code,
    "wall_s": wall,
    "user_s": user,
    "sys_s": system,
    "cpu_s": user + system,
    "peak_rss_mb": usage.ru_maxrss / 1024,
}
sys.stderr.write("RUSAGE " + json.dumps(report) + "\n")
sys.exit(code)
