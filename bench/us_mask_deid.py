"""Baseline for the ultrasound masking benchmark: pydicom + pydicom/deid's DicomCleaner,
applying a deid recipe (PIXL's image-operations/us-deid.recipe) to every DICOM file of a
directory the way the Python pipeline does it: one DicomCleaner per instance, detect()
(evaluate the recipe's %filter sections against the header), clean() (build the mask and
multiply the decoded pixels by it) and save_dicom() (write the cleaned instance).

Usage: python3 bench/us_mask_deid.py INPUT_DIR RECIPE OUTPUT_DIR [--reuse-cleaner]

Prints one line of JSON on stdout:
  {"tool":"pydicom+deid","deid":...,"pydicom":...,"files":N,"frames":F,"seconds":S,
   "frames_per_second":F/S}
Timing covers reading, masking and writing (one process, one thread). deid's own log lines
go to stderr. Exits 1 (after printing the JSON) if any file failed.

--reuse-cleaner builds a single DicomCleaner for the whole run. Beware: deid's detect()
replaces the recipe's "from:SequenceOfUltrasoundRegions" entry in place with the first
file's boxes, so a reused cleaner masks every later file with the first file's regions.
"""

import os

# Single thread for any numeric library that could spawn workers; set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
from importlib.metadata import version


def dicom_files(root: str) -> list:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            found.append(os.path.join(dirpath, name))
    return sorted(found)


def count_frames(paths: list) -> int:
    import pydicom

    total = 0
    for path in paths:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        total += int(header.get("NumberOfFrames", 1) or 1)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir")
    parser.add_argument("recipe")
    parser.add_argument("output_dir")
    parser.add_argument("--reuse-cleaner", action="store_true", help="one DicomCleaner for all files (see above)")
    args = parser.parse_args()

    # Keep stdout for the JSON line only: anything else written to fd 1 (deid's logger
    # prints to stdout) goes to stderr.
    result_out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)

    from deid.dicom import DicomCleaner

    paths = dicom_files(args.input_dir)
    if not paths:
        print("no files under %s" % args.input_dir, file=sys.stderr)
        return 2
    frames = count_frames(paths)  # header-only pre-scan, outside the timed section
    os.makedirs(args.output_dir, exist_ok=True)

    failures = 0
    shared = None
    started = time.perf_counter()
    for path in paths:
        try:
            if args.reuse_cleaner:
                if shared is None:
                    shared = DicomCleaner(output_folder=args.output_dir, deid=args.recipe)
                cleaner = shared
            else:
                cleaner = DicomCleaner(output_folder=args.output_dir, deid=args.recipe)
            cleaner.detect(path)
            cleaner.clean()
            cleaner.save_dicom(output_folder=args.output_dir)
        except Exception as error:  # report and carry on: the run's numbers say how many failed
            failures += 1
            print("FAILED %s: %s: %s" % (path, type(error).__name__, error), file=sys.stderr)
    seconds = time.perf_counter() - started

    result = {
        "tool": "pydicom+deid",
        "deid": version("deid"),
        "pydicom": version("pydicom"),
        "files": len(paths),
        "frames": frames,
        "seconds": round(seconds, 4),
        "frames_per_second": round(frames / seconds, 2) if seconds > 0 else None,
    }
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()
    if failures:
        print("%d of %d files failed" % (failures, len(paths)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
