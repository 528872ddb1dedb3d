"""Shortcut probes for the slice CNN: does it read anatomy and contrast, or the generator's habits?

    python benchmarks/cnn_shortcuts.py --generated HOLDOUT [--generated HOLDOUT2 ...] \\
        [--real REALDEV --real-headers real_headers.jsonl] [--model DIR ...] [--out probes.json]

HOLDOUT: a generated held-out corpus (``seriesclassifier synth OUT --studies 8 --seed 11
--profile holdout``), folder of DICOM + labels.csv. REALDEV: the real development set
(``../shared/real-dev``; labels.csv with series_uid, sequence, vendor, ...) and its headers as
the engine's Series JSON lines. ``--model`` folders hold cnn.safetensors + cnn.json; ``bundled``
is the bundle in SeriesClassifier/Resources/Models. Nothing here is in CI (figures, no asserts).

Every probe changes the *native* slice (before the model's own normalisation, square padding and
resizing) of the K slices the model samples, so the model sees what it would see had the scanner
written such an image:

- ``none``: the slices as written;
- ``bars_added``: the top and bottom 12.5 % of rows set to zero (rectangular-FOV padding bars);
- ``bars_removed``: a non-square image padded to square with its own border noise, so the
  model's zero padding bars disappear (unchanged for square images; ``n_affected`` says how many);
- ``background_zeroed``: everything outside the head mask set to zero (no noise floor);
- ``gamma_0.6`` / ``gamma_1.6``: intensities (relative to the 99.5th percentile) raised to a power;
- ``zoom_0.8`` / ``zoom_1.25``: the image scaled about its centre (border noise fills the gap);
- ``noise``: Rician noise with σ = 5 % of the 99th percentile added;
- non-brain inputs (accuracy meaningless; mean confidence and the share answered at p ≥ 0.9):
  ``constant`` (a flat image), ``noise_image`` (uniform noise), and the real development set's
  knee series when present.

The real development set is read with headers stripped: ``CnnModel.predict`` reads pixels only.
Prints markdown tables; ``--out`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from SeriesClassifierLib.dicom.slices import build_stack, preprocess, read_slice, sample_indices
from SeriesClassifierLib.models.cnn import CnnModel

BUNDLED = Path(__file__).resolve().parents[1] / "SeriesClassifier" / "Resources" / "Models"


def log(msg: str) -> None:
    print(f"[cnn_shortcuts {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- probes (native images)


def _border(img: np.ndarray, width: int = 4) -> np.ndarray:
    w = max(1, min(width, min(img.shape) // 8))
    return np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[:, :w].ravel(), img[:, -w:].ravel()])


def _fill_like_border(shape, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(_border(img), size=shape).astype(np.float32)


def head_mask(img: np.ndarray) -> np.ndarray:
    """The head (or object): above 10 % of the 99th percentile, closed, holes filled, slightly dilated."""
    a = np.abs(img)
    hi = float(np.percentile(a, 99)) or 1.0
    m = a > 0.1 * hi
    m = ndi.binary_closing(m, iterations=3)
    m = ndi.binary_fill_holes(m)
    return ndi.binary_dilation(m, iterations=2)


def bars_added(img, rng):
    out = img.copy()
    r = max(1, round(img.shape[0] * 0.125))
    out[:r] = 0
    out[-r:] = 0
    return out


def bars_removed(img, rng):
    rows, cols = img.shape
    if rows == cols:
        return img
    side = max(rows, cols)
    out = _fill_like_border((side, side), img, rng)
    top, left = (side - rows) // 2, (side - cols) // 2
    out[top : top + rows, left : left + cols] = img
    return out


def background_zeroed(img, rng):
    return np.where(head_mask(img), img, 0).astype(np.float32)


def _gamma(g):
    def probe(img, rng):
        hi = float(np.percentile(np.abs(img), 99.5)) or 1.0
        return (np.sign(img) * (np.abs(img) / hi) ** g * hi).astype(np.float32)

    return probe


def _zoom(z):
    def probe(img, rng):
        zoomed = ndi.zoom(img, z, order=1)
        out = _fill_like_border(img.shape, img, rng)
        r, c = img.shape
        zr, zc = zoomed.shape
        if z >= 1:
            t, le = (zr - r) // 2, (zc - c) // 2
            return zoomed[t : t + r, le : le + c].astype(np.float32)
        t, le = (r - zr) // 2, (c - zc) // 2
        out[t : t + zr, le : le + zc] = zoomed
        return out

    return probe


def noise(img, rng):
    sigma = 0.05 * (float(np.percentile(np.abs(img), 99)) or 1.0)
    a = img + rng.normal(0, sigma, img.shape)
    b = rng.normal(0, sigma, img.shape)
    return np.sqrt(a * a + b * b).astype(np.float32)


PROBES = {
    "none": lambda img, rng: img,
    "bars_added": bars_added,
    "bars_removed": bars_removed,
    "background_zeroed": background_zeroed,
    "gamma_0.6": _gamma(0.6),
    "gamma_1.6": _gamma(1.6),
    "zoom_0.8": _zoom(0.8),
    "zoom_1.25": _zoom(1.25),
    "noise": noise,
}


# ----------------------------------------------------------------------------- data


def read_native(files, options) -> list[np.ndarray]:
    """The K native slices the model would sample from a series (its own slice choice); [] when unreadable."""
    try:
        stack = build_stack(files)
    except Exception:  # noqa: BLE001 - no pixels: the model has no answer either
        return []
    out, cache = [], {}
    for i in sample_indices(stack, options.k, options.central_fraction):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(read_slice(stack.images[i], cache).astype(np.float32))
        except Exception:  # noqa: BLE001 - an unreadable slice is skipped, as at inference
            continue
    return out


def generated_items(folder: Path) -> list[dict]:
    from SeriesClassifierLib.training.cnn_train import label_rows, series_files

    files = series_files(folder)
    return [{"uid": r["series_uid"], "files": files[r["series_uid"]], "sequence": r["sequence"],
             "vendor": r.get("vendor", ""), "group": folder.name}
            for r in label_rows(folder / "labels.csv") if r["series_uid"] in files]


def real_items(data: Path, headers: Path) -> list[dict]:
    from SeriesClassifierLib.series import Series

    with open(data / "labels.csv", newline="", encoding="utf-8") as f:
        labels = {r["series_uid"]: r for r in csv.DictReader(f)}
    items = []
    for line in headers.read_text(encoding="utf-8").splitlines():
        s = Series.from_dict(json.loads(line))
        if s.series_uid in labels and not s.skipped:
            r = labels[s.series_uid]
            items.append({"uid": s.series_uid, "files": list(s.files), "sequence": r["sequence"],
                          "vendor": r["vendor"], "case": r.get("case", ""), "group": "real"})
    return items


# ----------------------------------------------------------------------------- scoring


def predict_native(model: CnnModel, images: list[np.ndarray]):
    if not images:
        return None
    pre = np.stack([preprocess(im, model.config.options)[0] for im in images])
    return model.output_from_slices(model.infer(pre))


def summarise(rows: list[tuple[str, str, float]]) -> dict:
    """rows: (truth, predicted, confidence) → accuracy, mean confidence, share at p ≥ 0.9."""
    if not rows:
        return {"n": 0}
    ok = np.array([t == p for t, p, _ in rows])
    conf = np.array([c for _, _, c in rows])
    return {"n": len(rows), "correct": int(ok.sum()), "accuracy": float(ok.mean()),
            "mean_confidence": float(conf.mean()), "confident_0.9": float((conf >= 0.9).mean()),
            "mean_confidence_wrong": float(conf[~ok].mean()) if (~ok).any() else None}


def probe_generated(model: CnnModel, items: list[dict], seed: int = 0) -> dict:
    results: dict[str, list] = defaultdict(list)
    affected = 0
    for n, it in enumerate(items):
        native = read_native(it["files"], model.config.options)
        if not native:
            continue
        affected += any(im.shape[0] != im.shape[1] for im in native)
        for name, probe in PROBES.items():
            rng = np.random.default_rng([seed, n, len(name)])
            out = predict_native(model, [probe(im, rng) for im in native])
            results[name].append((it["sequence"], out.sequence.label, out.sequence.probability))
    summary = {name: summarise(rows) for name, rows in results.items()}
    summary["bars_removed"]["n_affected"] = affected
    return summary


def non_brain(model: CnnModel, real: list[dict], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    size = 256
    fake = {"constant": [np.full((size, size), 500.0, np.float32) for _ in range(8)],
            "noise_image": [rng.uniform(0, 1000, (size, size)).astype(np.float32) for _ in range(8)]}
    for name, imgs in fake.items():
        o = predict_native(model, imgs)
        out[name] = {"label": o.sequence.label, "confidence": o.sequence.probability}
    knees = [it for it in real if "knee" in it.get("case", "")]
    for it in knees:
        o = predict_native(model, read_native(it["files"], model.config.options))
        if o is not None:
            out[f"real:{it['case']}"] = {"label": o.sequence.label, "confidence": o.sequence.probability,
                                         "labelled": it["sequence"]}
    return out


def real_accuracy(model: CnnModel, items: list[dict]) -> dict:
    rows, by_vendor, per_series = [], defaultdict(list), []
    for it in items:
        out = predict_native(model, read_native(it["files"], model.config.options))
        if out is None or out.sequence.label is None:
            continue
        r = (it["sequence"], out.sequence.label, out.sequence.probability)
        rows.append(r)
        by_vendor[it["vendor"]].append(r)
        per_series.append({"case": it["case"], "truth": r[0], "cnn": r[1], "p": round(r[2], 3)})
    return {"overall": summarise(rows), "vendor": {v: summarise(r) for v, r in sorted(by_vendor.items())},
            "series": per_series, "n_listed": len(items)}


# ----------------------------------------------------------------------------- main


def _fmt(s: dict) -> str:
    if not s or not s.get("n"):
        return "–"
    return f"{s['accuracy']:.2f} ({s['correct']}/{s['n']}), p̄ {s['mean_confidence']:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generated", type=Path, action="append", default=[], help="generated held-out corpus")
    p.add_argument("--real", type=Path, help="real development set folder (labels.csv inside)")
    p.add_argument("--real-headers", type=Path, help="its Series JSON lines (real_headers.jsonl)")
    p.add_argument("--model", action="append", default=[], help="CNN folder, or 'bundled' (default)")
    p.add_argument("--out", type=Path, help="write every figure here as JSON")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    models = args.model or ["bundled"]
    real = real_items(args.real, args.real_headers) if args.real and args.real_headers else []
    gen = {str(g): generated_items(g) for g in args.generated}
    result: dict = {}
    for name in models:
        model = CnnModel.load(BUNDLED if name == "bundled" else Path(name))
        log(f"model {name} ({model.config.version})")
        r: dict = {"version": model.config.version, "generated": {}}
        for g, items in gen.items():
            log(f"  probes on {g}: {len(items)} series")
            r["generated"][g] = probe_generated(model, items)
        if real:
            log(f"  real development set: {len(real)} series")
            r["real"] = real_accuracy(model, real)
        r["non_brain"] = non_brain(model, real)
        result[name] = r
    for name, r in result.items():
        print(f"\n## {name} ({r['version']})\n")
        for g, summary in r["generated"].items():
            print(f"generated held-out {g}:\n")
            print("| probe | accuracy (correct/n), mean p |\n|---|---|")
            for probe, s in summary.items():
                print(f"| {probe} | {_fmt(s)} |")
            print()
        if "real" in r:
            print(f"real development set, pixels only: {_fmt(r['real']['overall'])}")
            for v, s in r["real"]["vendor"].items():
                print(f"  {v}: {_fmt(s)}")
        print("non-brain inputs: " + "; ".join(f"{k} → {v['label']} p={v['confidence']:.2f}"
                                               for k, v in r["non_brain"].items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
