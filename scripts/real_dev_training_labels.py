"""The real development set's labels as training labels for the bundled forest.

    python scripts/real_dev_training_labels.py REALDEV/labels.csv labels_train.csv

Drops the research-only sources (never trained on; benchmarks/real_dev.py RESEARCH_ONLY) and adds the
contrast and acquisition attributes where the sequence class implies them (vocabulary.json), so the
forest's attribute heads learn from the real series too.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from SeriesClassifierLib.vocabulary import load_vocabulary

RESEARCH_ONLY = ("orthanc-mirrors/orthanc-tests",)


def main(argv: list[str]) -> int:
    source, target = Path(argv[0]), Path(argv[1])
    vocab = load_vocabulary()
    with open(source, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] not in RESEARCH_ONLY]
    for r in rows:
        cls = vocab.sequence(r["sequence"])
        r["contrast"], r["acquisition"] = cls.contrast or "", cls.acquisition or ""
    with open(target, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} training labels → {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
