"""A self-contained HTML contact sheet: one card per series, grouped by study.

Everything is inline (CSS, a little vanilla JS, images as base64 PNG data URIs), so the
file can be mailed, archived or opened offline; it refers to no URL at all.
Each card shows a thumbnail (with a Grad-CAM overlay when one is given), the
prediction and its confidence, whether the header forest and the pixel CNN agree,
and the current (accepted or corrected) label. A checkbox hides all but the series
that still need review.
"""

from __future__ import annotations

import base64
import html
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import __version__
from .safe_text import scrub_paths
from .store import LabelRecord, utc_now
from .thumbnail import render_png

# (record) -> (image, heatmap or None) or None; lets a caller add Grad-CAM without this module knowing models
ImageProvider = Callable[[LabelRecord], "tuple[np.ndarray | None, np.ndarray | None, str]"]


@dataclass
class ReportItem:
    record: LabelRecord
    image: np.ndarray | None = None  # 2-D greyscale, any range
    heatmap: np.ndarray | None = None  # 2-D 0..1, any resolution (resized onto the image)
    image_note: str = ""  # why there is no image


def agreement(record: LabelRecord) -> tuple[str, str]:
    """(css class, text) saying whether the forest and the CNN agree on the sequence."""
    p = record.prediction
    models = {name: m.sequence.label for name, m in (p.models.items() if p else []) if m.sequence}
    if len(models) >= 2:
        labels = set(models.values())
        if len(labels) == 1:
            return "agree", "forest and CNN agree"
        return "disagree", " vs ".join(f"{n}: {label}" for n, label in sorted(models.items()))
    if len(models) == 1:
        name = next(iter(models))
        return "single", f"{name} only"
    return "none", "no model output"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _told(text: str, record: LabelRecord, anonymise: bool) -> str:
    """A message for the page; anonymised, without file or folder names (a folder may be named after the
    patient) and without the patient's ID."""
    if not anonymise:
        return text
    p = record.prediction
    return scrub_paths(text, p.patient_id if p else "", p.study_uid if p else "")


def _card(item: ReportItem, anonymise: bool) -> str:
    r = item.record
    p = r.prediction
    flagged = bool(p and p.needs_review)
    todo = flagged and r.state == "unreviewed"
    classes = ["card", f"state-{r.state}"] + (["needs-review"] if todo else [])
    if item.image is not None:
        plain = _data_uri(render_png(item.image))
        if item.heatmap is not None:
            heat = _data_uri(render_png(item.image, item.heatmap))
            picture = (f'<img class="thumb plain" alt="series image" src="{plain}">'
                       f'<img class="thumb heat" alt="Grad-CAM overlay" src="{heat}">')
            classes.append("has-heat")
        else:
            picture = f'<img class="thumb" alt="series image" src="{plain}">'
    else:
        picture = f'<div class="noimage">{_e(_told(item.image_note or "no image", r, anonymise))}</div>'
    number = "?" if not p or p.series_number is None else p.series_number
    description = (p.series_description if p else "") or "(no description)"
    agree_class, agree_text = agreement(r)
    # the export's column names and spellings, so a script reading the page reads the CSV the same way
    data = {"predicted-sequence": p.sequence.label if p and p.sequence else "",
            "predicted-top3": p.sequence.top_text(3) if p and p.sequence else "",
            "label-sequence": r.sequence or "", "review-state": r.state}
    attributes = "".join(f' data-{k}="{_e(v)}"' for k, v in data.items())
    lines = [f'<div class="{" ".join(classes)}" data-uid="{_e(r.series_uid)}"{attributes}>', picture,
             '<div class="info">']
    lines.append(f'<div class="title"><span class="num">#{_e(number)}</span> {_e(description)}</div>')
    if p and p.error:
        lines.append(f'<div class="error">could not classify: {_e(_told(p.error, r, anonymise))}</div>')
    if p and p.sequence:
        conf = p.sequence.probability
        lines.append(
            f'<div class="pred"><b>{_e(p.sequence.label)}</b> <span class="conf">{conf:.0%}</span>'
            f'<span class="bar"><span style="width:{conf * 100:.0f}%"></span></span></div>'
        )
        top = " · ".join(f"{_e(label)} {prob:.0%}" for label, prob in p.sequence.top(3)[1:])
        if top:
            lines.append(f'<div class="top">then {top}</div>')
    if p and p.orientation:
        lines.append(f'<div class="orient">{_e(p.orientation.label)} {p.orientation.probability:.0%}</div>')
    if p and p.sequence and p.slice_profile:
        lines.append(_profile_svg(p.slice_profile, p.sequence.label))
    lines.append(f'<div class="agree {agree_class}">{_e(agree_text)}</div>')
    if flagged:
        why = _told("; ".join(p.reasons), r, anonymise) if p and p.reasons else "low confidence"
        text = "needs review" if todo else "was flagged"
        lines.append(f'<div class="flag{"" if todo else " done"}" title="{_e(why)}">{text}</div>')
    if r.state == "corrected":
        who = f" by {_e(r.corrected_by)}" if r.corrected_by else ""
        lines.append(f'<div class="label corrected">corrected → <b>{_e(r.sequence)}</b> '
                     f'{_e(r.orientation or "")}{who}</div>')
    elif r.state == "accepted":
        lines.append(f'<div class="label accepted">accepted{" by " + _e(r.corrected_by) if r.corrected_by else ""}'
                     "</div>")
    if r.note and not anonymise:
        lines.append(f'<div class="note">{_e(r.note)}</div>')
    lines.append(f'<div class="uid">{_e(r.series_uid)}</div>')
    lines.append("</div></div>")
    return "\n".join(lines)


def _profile_svg(profile: Sequence[dict[str, float]], label: str, width: int = 180, height: int = 28) -> str:
    """Inline SVG: the CNN's probability of ``label`` on each sampled slice (is the whole series that class?)."""
    values = [float(slice_probs.get(label, 0.0)) for slice_probs in profile]
    if not values:
        return ""
    step = width / max(1, len(values) - 1) if len(values) > 1 else 0
    points = " ".join(f"{i * step:.1f},{(1 - v) * (height - 2) + 1:.1f}" for i, v in enumerate(values))
    dots = "".join(
        f'<circle cx="{i * step:.1f}" cy="{(1 - v) * (height - 2) + 1:.1f}" r="1.8"><title>slice {i + 1}: '
        f"{_e(label)} {v:.0%}</title></circle>"
        for i, v in enumerate(values)
    )
    return (
        f'<svg class="profile" width="{width}" height="{height}" viewBox="-2 0 {width + 4} {height}" '
        f'role="img" aria-label="{_e(label)} per slice"><title>{_e(label)} per sampled slice</title>'
        f'<line x1="0" x2="{width}" y1="{height / 2:.1f}" y2="{height / 2:.1f}" class="half"/>'
        f'<polyline points="{points}"/>{dots}</svg>'
    )


def _group(items: Iterable[ReportItem]) -> OrderedDict[tuple[str, str], list[ReportItem]]:
    groups: OrderedDict[tuple[str, str], list[ReportItem]] = OrderedDict()
    for item in items:
        p = item.record.prediction
        groups.setdefault((p.patient_id if p else "", p.study_uid if p else ""), []).append(item)
    return groups


def build_report(items: Sequence[ReportItem], title: str = "SeriesClassifier report", anonymise: bool = False) -> str:
    """The whole HTML document as a string."""
    groups = _group(items)
    n_todo = sum(1 for i in items if i.record.needs_review)
    any_heat = any(i.heatmap is not None and i.image is not None for i in items)
    sections = []
    for k, ((patient, study), members) in enumerate(groups.items(), 1):
        who = f"Subject {k:02d}" if anonymise else f"Patient {patient or '(unknown)'}"
        study_text = "" if anonymise else f' <span class="study-uid">study {_e(study)}</span>'
        sections.append(
            f'<section class="study"><h2>{_e(who)}{study_text} <span class="count">{len(members)} series</span>'
            "</h2>\n<div class=\"grid\">\n" + "\n".join(_card(i, anonymise) for i in members) + "\n</div></section>"
        )
    heat_toggle = (
        '<label><input type="checkbox" id="show-heat" checked> show Grad-CAM</label>' if any_heat else ""
    )
    return _PAGE.format(
        title=_e(title),
        css=_CSS,
        js=_JS,
        n_series=len(items),
        n_studies=len(groups),
        n_todo=n_todo,
        heat_toggle=heat_toggle,
        sections="\n".join(sections) if sections else '<p class="empty">No series.</p>',
        generated=_e(f"SeriesClassifier {__version__}, {utc_now()[:19].replace('T', ' ')} UTC"),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body class="heat-on">
<header><h1>{title}</h1>
<div class="summary">{n_series} series in {n_studies} studies · <span id="todo-count">{n_todo}</span> need review</div>
<div class="controls"><label><input type="checkbox" id="review-only"> needs review only</label> {heat_toggle}
<span id="shown"></span></div></header>
<main>
{sections}
</main>
<footer>Written by {generated}. Labels: model prediction unless accepted or corrected by a person.</footer>
<script>{js}</script>
</body></html>
"""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111}
header{position:sticky;top:0;background:#1f2937;color:#fff;padding:10px 18px;z-index:1;
display:flex;gap:24px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}.summary,.controls{font-size:14px}.controls label{margin-right:14px}
main{padding:12px 18px}section.study{margin-bottom:22px}
h2{font-size:15px;margin:8px 0;font-weight:600}.study-uid,.count{font-weight:400;color:#555;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.15);padding:8px;font-size:12px;
border-top:4px solid #9ca3af}
.card.state-accepted{border-top-color:#16a34a}.card.state-corrected{border-top-color:#2563eb}
.card.needs-review{border-top-color:#dc2626}
.thumb{width:100%;height:auto;max-height:192px;object-fit:contain;background:#000;display:block;border-radius:3px}
.card.has-heat .thumb.plain{display:none}body:not(.heat-on) .card.has-heat .thumb.plain{display:block}
body:not(.heat-on) .card.has-heat .thumb.heat{display:none}
.noimage{height:120px;display:flex;align-items:center;justify-content:center;text-align:center;background:#e5e7eb;
color:#555;border-radius:3px;padding:4px}
.info{margin-top:6px;line-height:1.45}.title{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.num{color:#6b7280}.pred b{font-size:13px}.conf{color:#374151;margin-left:4px}
.bar{display:inline-block;width:60px;height:6px;background:#e5e7eb;margin-left:6px;vertical-align:middle}
.bar span{display:block;height:100%;background:#2563eb}.top,.orient,.uid{color:#555}
.uid{font-size:10px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.agree.agree{color:#15803d}.agree.disagree{color:#b91c1c;font-weight:600}.agree.single,.agree.none{color:#6b7280}
.flag{display:inline-block;background:#fee2e2;color:#991b1b;border-radius:3px;padding:0 5px;margin:2px 0}
.flag.done{background:#f3f4f6;color:#6b7280}.label.corrected{color:#1d4ed8}.label.accepted{color:#15803d}.error{color:#b91c1c}.note{font-style:italic}
body.review-only .card:not(.needs-review){display:none}section.study.all-hidden{display:none}
footer{padding:10px 18px;color:#6b7280;font-size:11px}
svg.profile{display:block;margin:2px 0}svg.profile polyline{fill:none;stroke:#2563eb;stroke-width:1.5}
svg.profile circle{fill:#2563eb}svg.profile line.half{stroke:#d1d5db;stroke-dasharray:2 2}
"""

_JS = """
(function(){
  var only=document.getElementById('review-only'), heat=document.getElementById('show-heat');
  if(location.hash.indexOf('review-only')>=0){only.checked=true;}
  function refresh(){
    document.body.classList.toggle('review-only', only.checked);
    var shown=0;
    document.querySelectorAll('section.study').forEach(function(s){
      var n=0;
      s.querySelectorAll('.card').forEach(function(c){
        if(!only.checked||c.classList.contains('needs-review')) n++;
      });
      s.classList.toggle('all-hidden', n===0);
      shown+=n;
    });
    document.getElementById('shown').textContent=shown+' shown';
  }
  only.addEventListener('change', refresh);
  if(heat){heat.addEventListener('change', function(){document.body.classList.toggle('heat-on', heat.checked);});}
  refresh();
})();
"""


def report_items(
    records: Sequence[LabelRecord],
    images: ImageProvider | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[ReportItem]:
    """ReportItems for ``records``, asking ``images`` for each series' picture (and heat map)."""
    items = []
    for r in records:
        image = heat = None
        note = "no image source"
        if images is not None:
            try:
                image, heat, note = images(r)
            except Exception as exc:  # one bad series never stops the sheet
                note = f"{type(exc).__name__}: {exc}"
                if on_error:
                    on_error(f"{r.series_uid}: {note}")
        items.append(ReportItem(r, image, heat, note))
    return items
