"""The FHIR for Research bulk-data workshop's way of turning NDJSON into tables, as the
baseline of bench/fhir.sh: every file read into memory, each resource's fields picked with
fhirpathpy, rows collected into pandas DataFrames (json_normalize), written to parquet.

Usage: python3 bench/fhir_workshop.py NDJSON_DIR SHORTHAND.json OUT_DIR
(SHORTHAND.json: {"Patient": [["id", "id"], ["family", "name.family.first()"]], ...})
"""
import glob
import json
import os
import sys
import time

import pandas as pd
from fhirpathpy import compile as fp_compile


def main():
    source, views_file, out = sys.argv[1:4]
    views = json.load(open(views_file))
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    total_bytes = 0
    resources = {}
    for path in sorted(glob.glob(os.path.join(source, "*.ndjson"))):
        total_bytes += os.path.getsize(path)
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    resources.setdefault(r["resourceType"], []).append(r)
    rows_out = 0
    for rtype, columns in views.items():
        compiled = [(name, fp_compile(path)) for name, path in columns]
        records = []
        for r in resources.get(rtype, []):
            row = {}
            for name, fn in compiled:
                value = fn(r)
                row[name] = value[0] if len(value) == 1 else (None if not value else value)
            records.append(row)
        frame = pd.json_normalize(records)
        frame.to_parquet(os.path.join(out, rtype.lower() + ".parquet"))
        rows_out += len(frame)
    seconds = time.perf_counter() - start
    print(json.dumps({"bytes": total_bytes, "seconds": seconds, "rows": rows_out, "mb_per_s": total_bytes / 1e6 / seconds}))


if __name__ == "__main__":
    main()
