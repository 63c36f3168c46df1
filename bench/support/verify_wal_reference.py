"""The Python reference's WAL verification algorithm, the baseline of `bench:wal`.

Per line: parse, re-canonicalize (sorted keys, compact, ASCII), sha256, link to the previous
entry. Prints one JSON object: entries, bytes, ok.
Usage: python3 verify_wal.py FILE
"""
import hashlib
import json
import sys


def main(path):
    prev = "0" * 64
    expected_seq = 0
    entries = 0
    size = 0
    ok = True
    with open(path, "rb") as f:
        for raw in f:
            size += len(raw)
            entries += 1
            entry = json.loads(raw)
            stored = entry.pop("entry_hash")
            body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            if hashlib.sha256(body.encode("utf-8")).hexdigest() != stored:
                ok = False
            if entry["prev_hash"] != prev or entry["seq"] != expected_seq:
                ok = False
            prev = stored
            expected_seq = entry["seq"] + 1
    print(json.dumps({"entries": entries, "bytes": size, "ok": ok}))


if __name__ == "__main__":
    main(sys.argv[1])
