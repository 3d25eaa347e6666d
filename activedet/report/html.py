"""A static HTML report over active-learning runs: ``OUT/index.html`` plus ``OUT/thumbs/*.png``.

The page opens from disk (``file://``): no server, no JavaScript, no network. It holds

1. **Learning curves** (the metric vs labelled images, and vs labelled boxes): one line per strategy label
   through the per-cycle means over seeds, a band of ± one sample standard deviation, as inline SVG written here
   (same colours as the PNG plots of :mod:`activedet.report.plots`). Means and labels follow :mod:`activedet.report`.
2. **Per-class values of the last cycle of each run**: the per-class keys of the metric's family in
   ``metrics.jsonl`` (``voc/<class>/ap_area`` for ``voc/mAP_area``, ``voc/<class>/ap_11pt`` for ``voc/mAP_11pt``,
   ``accuracy/<class>/accuracy`` for ``accuracy/*``, ``coco/<class>/AP`` for ``coco/*``), one row per class
   (sorted by name), one column per run, and the metric itself in the last row.
3. **What each cycle queried**, per run: the first ``thumbnails_per_cycle`` picks of ``RUN/cycles/t/selection.json``
   by rank, as thumbnails captioned with the reason for the pick (``rank 3, entropy score 0.82``; rank 1 = picked
   first, i.e. ``rank`` 0 in the file). The image is the pool record ``pick["index"]`` of the run's pool (the
   training split, and for a human run the unlabelled folder with the imported labels), read through
   ``RUN/config.json`` (:func:`activedet.config.load_config` and :func:`activedet.workflows.run_pool`). Drawn on it:

   * the **ground-truth boxes** of the record (green, with the class name): what the oracle revealed;
   * the **predicted boxes** (orange, class and score) when ``RUN/cycles/t/predictions.json`` exists: the model of
     cycle t on the picked images, ``{"<image_id>": {"boxes": [[x1, y1, x2, y2], ...], "scores": [...],
     "labels": [...]}}`` with xyxy boxes in original-image pixels and labels ``1..C`` (the records' convention).
     Boxes scoring below ``min_score`` are left out. The report never runs a model: running each cycle's
     ``model.pt`` over its picks would cost more than the rest of the report, so without that file only the
     ground truth is drawn (the page says so).

A missing or unreadable file (config, pool, image, selection, predictions) gives a visible placeholder with the
reason, never an exception; only the curves' inputs (``metrics.jsonl``, ``config.json``) are required, with the
errors of :func:`activedet.report.load_runs`. Every text put into the page is escaped (:func:`html.escape`).

The curves and the per-class table are built here; the queried images by :mod:`activedet.report.thumbnails`.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from . import Run, Summary, load_runs, summarize
from .plots import _COLORS
from .thumbnails import THUMB_LEGEND, Thumbnails, run_section

__all__ = ["write_html_report", "DEFAULT_METRICS"]

#: The metric shown when none is given: the first of these that every run reports.
DEFAULT_METRICS = ("voc/mAP_area", "accuracy/top1", "coco/AP", "froc/cpm")

_esc = html.escape


def write_html_report(
    run_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    metric: str | None = None,
    cycles: int | None = None,
    thumbnails_per_cycle: int = 12,
    thumb_size: int = 160,
    min_score: float = 0.3,
) -> Path:
    """Write ``out_dir/index.html`` and its thumbnails ``out_dir/thumbs/*.png``; return the path of ``index.html``.

    Args:
        run_dirs: run directories, or directories containing runs (as :func:`activedet.report.load_runs`).
        out_dir: created if needed; other files in it are left alone (thumbnails of an earlier report with the same
            names are replaced).
        metric: the ``metrics.jsonl`` key of the curves; ``None``: the first of :data:`DEFAULT_METRICS` that every
            run reports.
        cycles: show cycles ``0..cycles`` only (as :func:`activedet.report.summarize`): the curves stop there, the
            per-class table shows each run's values at that cycle (or its last, if it stopped earlier) and the
            queried images are those of cycles ``0..cycles - 1``, the picks that made the compared labelled sets.
            ``None``: every cycle.
        thumbnails_per_cycle: picks shown per cycle (the first by rank), an int >= 0.
        thumb_size: the longer side of a thumbnail in pixels, an int in [16, 2048].
        min_score: predicted boxes scoring below this are not drawn.

    Raises ``ValueError`` / ``FileNotFoundError`` as :func:`activedet.report.load_runs` and
    :func:`activedet.report.summarize` do; nothing below the curves raises (see the module docstring).
    """
    if isinstance(thumbnails_per_cycle, bool) or not isinstance(thumbnails_per_cycle, int) or thumbnails_per_cycle < 0:
        raise ValueError(
            f"The 'thumbnails_per_cycle' parameter of write_html_report must be an int >= 0. "
            f"Got {thumbnails_per_cycle!r} instead."
        )
    if isinstance(thumb_size, bool) or not isinstance(thumb_size, int) or not 16 <= thumb_size <= 2048:
        raise ValueError(
            f"The 'thumb_size' parameter of write_html_report must be an int in [16, 2048]. Got {thumb_size!r} instead."
        )
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not math.isfinite(min_score):
        raise ValueError(
            f"The 'min_score' parameter of write_html_report must be a finite number. Got {min_score!r} instead."
        )
    runs = sorted(load_runs(run_dirs), key=lambda run: (run.strategy, run.seed))
    summary = summarize(runs, metric=metric or _default_metric(runs), baseline=None, cycles=cycles)
    out_dir = Path(out_dir)
    thumbs = Thumbnails(out_dir, thumb_size, min_score)
    body = [
        f"<h1>Active-learning report: {_esc(summary.metric)}</h1>",
        f"<p>{len(runs)} run(s), {len(summary.strategies)} strategy label(s). Curves: mean over seeds, band "
        "± one sample standard deviation.</p>",
        *(f'<p class="warning">{_esc(w)}</p>' for w in summary.warnings),
        "<h2>Learning curves</h2>",
        f'<div class="plots">{"".join(_figure(summary, axis) for axis in ("images", "boxes"))}</div>',
        "<h2>Per class, last cycle of each run</h2>" if cycles is None else f"<h2>Per class, cycle {cycles}</h2>",
        _per_class_table(runs, summary.metric, cycles),
        "<h2>Queried images</h2>",
        THUMB_LEGEND,
        *(run_section(run, k, thumbs, thumbnails_per_cycle, before=cycles) for k, run in enumerate(runs)),
    ]
    page = _PAGE.format(title=_esc(f"activedet report: {summary.metric}"), size=thumb_size, body="\n".join(body))
    return atomic_write_text(out_dir / "index.html", page)


def _default_metric(runs: list[Run]) -> str:
    for name in DEFAULT_METRICS:
        if all(name in run.metrics for run in runs):
            return name
    available = sorted(set().union(*(run.metrics for run in runs)))
    raise ValueError(
        f"The 'metric' parameter of write_html_report is needed: the runs report none of "
        f"{', '.join(DEFAULT_METRICS)} in every run; choose one of {', '.join(available) or '(none)'}"
    )


# ---------------------------------------------------------------------------------------------------------- curves
_W, _H = 600, 360  # SVG size in px, two side by side in a 1280 px window; the plot area is inside the margins
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 36, 50


def _nice_axis(values: np.ndarray) -> tuple[list[float], int]:
    """Ticks (1, 2 or 5 times a power of ten apart) covering the finite ``values``, and the decimals to show."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if hi - lo < 1e-12:  # one point, or a flat curve: open a window around it
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)], max(0, -math.floor(math.log10(step) + 1e-9))


def _path(points: list[tuple[float, float]]) -> str:
    """SVG path data through ``points``; a point with a NaN coordinate breaks the line."""
    commands, pen_down = [], False
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
    return " ".join(commands)


def _figure(summary: Summary, axis: str) -> str:
    """A ``<figure>``: the SVG of the metric vs the mean labelled ``axis`` ("images" or "boxes"), and its legend."""
    series = [
        (label, getattr(s, f"{axis}_mean"), s.metric_mean, s.metric_std, len(s.seeds))
        for label, s in summary.strategies.items()
    ]  # sorted labels: the colours of activedet.report.plots
    x_ticks, x_decimals = _nice_axis(np.concatenate([x for _, x, *_ in series]))
    y_ticks, y_decimals = _nice_axis(np.concatenate([v for _, _, y, std, _ in series for v in (y, y - std, y + std)]))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(v: float) -> float:
        return _LEFT + (v - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT)

    def py(v: float) -> float:
        return _H - _BOTTOM - (v - y0) / (y1 - y0) * (_H - _TOP - _BOTTOM)

    title = f"{summary.metric} vs labelled {axis}"
    parts = [
        f'<svg class="curves" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{_W / 2:.0f}" y="20" text-anchor="middle" class="title">{_esc(title)}</text>',
    ]
    for v in x_ticks:
        parts.append(
            f'<line class="grid" x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>'
            f'<text x="{px(v):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{v:.{x_decimals}f}</text>'
        )
    for v in y_ticks:
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(v):.1f}" y2="{py(v):.1f}"/>'
            f'<text x="{_LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.{y_decimals}f}</text>'
        )
    parts.append(
        f'<text x="{(_LEFT + _W - _RIGHT) / 2:.0f}" y="{_H - 10}" text-anchor="middle">labelled {axis} '
        f'(mean over seeds)</text><text transform="translate(16,{(_TOP + _H - _BOTTOM) / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{_esc(summary.metric)}</text>'
    )
    legend = []
    for rank, (label, x, y, std, n_seeds) in enumerate(series):
        color = _COLORS[rank % len(_COLORS)]
        dash = f' stroke-dasharray="{6 + rank // len(_COLORS)} 3"' if rank >= len(_COLORS) else ""
        parts.append(f'<g class="strategy"><title>{_esc(label)} (n={n_seeds})</title>')
        band = np.isfinite(std) & np.isfinite(y) & np.isfinite(x)
        if band.all() and len(x) > 1:  # a single seed has no spread to draw
            outline = [(px(a), py(b + s)) for a, b, s in zip(x, y, std)]
            outline += [(px(a), py(b - s)) for a, b, s in zip(x[::-1], y[::-1], std[::-1])]
            parts.append(f'<path class="band" d="{_path(outline)} Z" fill="{color}" fill-opacity="0.18"/>')
        parts.append(
            f'<path class="curve" d="{_path([(px(a), py(b)) for a, b in zip(x, y)])}" fill="none" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
        )
        for t, (a, b, s) in enumerate(zip(x, y, std)):
            if math.isfinite(a) and math.isfinite(b):
                spread = f" ± {s:.4f}" if math.isfinite(s) else ""
                parts.append(
                    f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{color}"><title>'
                    f"{_esc(label)}, cycle {t}: {a:g} {axis}, {b:.4f}{spread}</title></circle>"
                )
        parts.append("</g>")
        legend.append(f'<li><span class="swatch" style="background:{color}"></span>{_esc(label)} (n={n_seeds})</li>')
    parts.append("</svg>")
    return f'<figure class="plot">{"".join(parts)}<ul class="legend">{"".join(legend)}</ul></figure>'


# ------------------------------------------------------------------------------------------------------- per class
def _per_class_suffix(metric: str) -> tuple[str, str | None]:
    family, _, overall = metric.partition("/")
    suffix = {"voc": "ap_11pt" if overall == "mAP_11pt" else "ap_area", "accuracy": "accuracy", "coco": "AP"}.get(
        family
    )
    return family, suffix


def _per_class_table(runs: list[Run], metric: str, cycles: int | None = None) -> str:
    """One row per class, one column per run: the per-class value at cycle ``cycles`` or the run's last cycle,
    whichever comes first."""
    family, suffix = _per_class_suffix(metric)
    if suffix is None:
        return f"<p>Metric {_esc(metric)} has no per-class values.</p>"
    head, tail = f"{family}/", f"/{suffix}"
    keys = {
        key[len(head) : -len(tail)]: key
        for run in runs
        for key in run.metrics
        if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail)
    }
    if not keys:
        return f"<p>The runs report no per-class key {_esc(f'{family}/<class>/{suffix}')}.</p>"

    at = lambda run: len(run.cycles) - 1 if cycles is None else min(cycles, len(run.cycles) - 1)

    def cell(run: Run, key: str) -> str:
        values = run.metrics.get(key)
        value = float(values[at(run)]) if values is not None else math.nan
        return f"<td>{value:.4f}</td>" if math.isfinite(value) else '<td class="na">n/a</td>'

    header = "".join(
        f"<th>{_esc(run.strategy)}<br>seed {run.seed}<br><small>cycle {at(run)}, "
        f"{run.labelled_images[at(run)]:g} images</small></th>"
        for run in runs
    )
    rows = [
        f'<tr><th scope="row">{_esc(name)}</th>{"".join(cell(run, key) for run in runs)}</tr>'
        for name, key in sorted(keys.items())
    ]
    total = f'<tr><th scope="row">{_esc(metric)}</th>{"".join(cell(run, metric) for run in runs)}</tr>'
    return (
        f'<div class="scroll"><table class="per-class"><caption>{_esc(f"{family}/<class>/{suffix}")}'
        f"</caption><thead><tr><th>class</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"<tfoot>{total}</tfoot></table></div>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
svg.curves {{ background: #fff; border: 1px solid #ddd; font-size: 12px; }}
svg.curves .title {{ font-size: 14px; font-weight: bold; }}
svg.curves .grid {{ stroke: #e4e4e4; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure.plot {{ margin: 0; }}
ul.legend {{ list-style: none; padding: 0; font-size: 13px; max-width: 600px; }}
.swatch {{ display: inline-block; width: 14px; height: 4px; margin-right: 6px; vertical-align: middle; }}
.scroll {{ overflow-x: auto; }}
table.per-class {{ border-collapse: collapse; font-size: 13px; }}
table.per-class th, table.per-class td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
table.per-class th[scope=row] {{ text-align: left; }}
td.na {{ color: #999; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: 10px; }}
figure.thumb {{ margin: 0; width: {size}px; font-size: 12px; }}
figure.thumb img {{ display: block; image-rendering: pixelated; border: 1px solid #ccc; }}
.placeholder {{ width: {size}px; height: {size}px; box-sizing: border-box; border: 2px dashed #c33;
  background: #fbeaea; color: #a00; display: flex; flex-direction: column; justify-content: center;
  align-items: center; text-align: center; overflow: hidden; padding: 4px; word-break: break-word; }}
.id, .path, .note {{ color: #666; }}
.warning {{ color: #a00; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
