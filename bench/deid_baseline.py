"""Baseline for the de-identification benchmark: the pydicom + dicom-anonymizer path under
PIXL's de-identification, applying the same allow-list as pixl (the project's
tag-operation files): dicom-anonymizer's actions for each listed tag, then every element
not listed removed at every depth, as PIXL enforces its allow-list.

Usage: python3 bench/deid_baseline.py TAG_FILE[,TAG_FILE...] INPUT_DIR OUTPUT_DIR
Prints the number of instances written and the seconds taken (one process, one core).
"""

import datetime
import hashlib
import os
import sys
import time

import pydicom
import yaml
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, delete, empty, keep, replace, replace_UID

KEY = b"bench-key"


def secure_hash(dataset, tag):
    element = dataset.get(tag)
    if element is not None and element.value:
        digest = hashlib.blake2b(str(element.value).encode(), key=KEY, digest_size=32).hexdigest()
        element.value = digest[:16] if element.VR == "SH" else digest


def date_shift(dataset, tag):
    element = dataset.get(tag)
    if element is not None and element.value:
        value = datetime.datetime.strptime(str(element.value)[:8], "%Y%m%d") - datetime.timedelta(days=100)
        element.value = value.strftime("%Y%m%d") + str(element.value)[8:]


ACTIONS = {"keep": keep, "delete": delete, "replace": replace, "replace_UID": replace_UID,
           "empty": empty, "secure-hash": secure_hash, "date-shift": date_shift}


def load_rules(paths):
    rules = {}
    for path in paths:
        with open(path) as file:
            for entry in yaml.safe_load(file):
                rules[(entry["group"], entry["element"])] = ACTIONS[entry["op"]]
    return rules


def enforce_allowlist(dataset, allowed):
    for element in list(dataset):
        if (element.tag.group, element.tag.element) not in allowed:
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                enforce_allowlist(item, allowed)


def main():
    tag_files, input_dir, output_dir = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    rules = load_rules(tag_files)
    allowed = set(rules)
    os.makedirs(output_dir, exist_ok=True)
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(input_dir) for name in names)
    started = time.perf_counter()
    for index, path in enumerate(files):
        dataset = pydicom.dcmread(path)
        anonymize_dataset(dataset, rules, delete_private_tags=False)
        enforce_allowlist(dataset, allowed)
        dataset.save_as(os.path.join(output_dir, f"{index:06}.dcm"))
    print(len(files), round(time.perf_counter() - started, 3))


if __name__ == "__main__":
    main()
