"""The "Queried images" section of the HTML report (:mod:`activedet.report.html`, item 3 of its docstring):
per run, each cycle's first picks by rank as thumbnails with the ground-truth boxes (green) and, when
``RUN/cycles/t/predictions.json`` exists, the predicted boxes (orange), captioned with the reason for the pick.

:class:`Thumbnails` reads each run's pool through its ``config.json`` (once per distinct training split) and
writes ``OUT/thumbs/*.png``; a missing or unreadable input gives a placeholder with the reason, never an
exception. Every text put into the page is escaped.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..al.rundir import RunDir
from ..atomic import atomic_write
from .runs import Run

__all__ = ["Thumbnails", "run_section", "THUMB_LEGEND"]

_GT_COLOR, _PRED_COLOR = (40, 200, 40), (255, 140, 0)
_esc = html.escape


def run_section(run: Run, k: int, thumbs: Thumbnails, per_cycle: int, *, before: int | None = None) -> str:
    """The thumbnails of every cycle's picks of run number ``k`` (thumbnail files ``thumbs/r{k}_c{t}_{j}.png``);
    with ``before``, of cycles ``t < before`` only."""
    pool, problem = thumbs.pool(run.path)
    parts = [
        f'<section class="run"><h3>{_esc(run.strategy)}, seed {run.seed}</h3>',
        f'<p class="path">{_esc(str(run.path))}</p>',
    ]
    if problem:
        parts.append(f'<p class="warning">pool images unavailable: {_esc(problem)}</p>')
    run_dir = RunDir(run.path)
    cycles = [
        (t, run_dir.cycle(t))
        for t in run_dir.cycles()
        if (before is None or t < before) and run_dir.cycle(t).selection.is_file()
    ]
    if not cycles:
        parts.append("<p>No cycles/t/selection.json: nothing was queried yet.</p>")
    for t, files in cycles:
        picks, note = _read_picks(files.selection)
        predictions, prediction_note = _read_predictions(files.predictions)
        shown = picks[:per_cycle]
        more = f", the first {len(shown)} by rank shown" if len(shown) < len(picks) else ""
        parts.append(
            f"<h4>cycle {t}: {len(picks)} image(s) queried by the model of cycle {t}{more}</h4>"
            f'<p class="note">{_esc(note or prediction_note)}</p><div class="thumbs">'
        )
        parts += [
            thumbs.figure(pool, pick, predictions, f"r{k:03d}_c{t:03d}_{j:03d}.png", run.strategy)
            for j, pick in enumerate(shown)
        ]
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def _read_picks(path: Path) -> tuple[list[dict], str | None]:
    """The picks of a selection.json sorted by rank, and a note when the file could not be used."""
    try:
        picks = json.loads(path.read_text(encoding="utf-8")).get("picks")
    except (OSError, ValueError, AttributeError) as exc:
        return [], f"{path} unreadable: {exc}"
    if not isinstance(picks, list) or not all(isinstance(p, dict) for p in picks):
        return [], f"{path}: 'picks' must be a list of objects"
    rank = lambda p: p["rank"] if isinstance(p.get("rank"), (int, float)) else math.inf
    return sorted(picks, key=rank), None


def _read_predictions(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, "No predictions.json for this cycle: ground-truth boxes only."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path.name} unreadable ({exc}): ground-truth boxes only."
    if not isinstance(data, dict):
        return None, f"{path.name} must hold an object keyed by image_id: ground-truth boxes only."
    return data, "Predicted boxes (orange) from predictions.json; ground truth in green."


def _predicted_boxes(entry, min_score: float) -> list[tuple[np.ndarray, float, int]]:
    """``(xyxy box, score, label)`` of one predictions.json entry, scores >= ``min_score``; ValueError if malformed."""
    if not isinstance(entry, dict):
        raise ValueError("an entry must be an object with boxes, scores and labels")
    boxes = np.asarray(entry.get("boxes", []), np.float64).reshape(-1, 4)
    scores = np.asarray(entry.get("scores", []), np.float64).reshape(-1)
    labels = np.asarray(entry.get("labels", []), np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError("boxes must be finite [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
    return [(box, float(s), int(label)) for box, s, label in zip(boxes, scores, labels) if s >= min_score]


def _reason(pick: dict, strategy: str) -> str:
    """``rank 3, entropy score 0.82`` (rank 1 = picked first)."""
    rank, score = pick.get("rank"), pick.get("score")
    shown_rank = f"rank {rank + 1}" if isinstance(rank, int) and not isinstance(rank, bool) else "rank ?"
    name = pick.get("strategy") if isinstance(pick.get("strategy"), str) else strategy
    if isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score):
        return f"{shown_rank}, {name} score {score:.3g}"
    return f"{shown_rank}, {name} (no score)"


class Thumbnails:
    """Reads each run's pool (once per distinct training split) and writes thumbnails into ``out_dir/thumbs``."""

    def __init__(self, out_dir: Path, size: int, min_score: float):
        self.dir, self.size, self.min_score = out_dir / "thumbs", size, min_score
        self._pools: dict[str, tuple] = {}

    def pool(self, run_dir: Path):
        """``(DetectionDataset, None)``, or ``(None, why not)``."""
        from ..config import load_config
        from ..workflows import run_pool

        try:
            cfg = load_config(RunDir(run_dir).config)
        except (OSError, ValueError) as exc:
            return None, str(exc)  # a ConfigError names the file
        key = json.dumps(
            [
                getattr(cfg, name, None)
                for name in (
                    "data_format",
                    "train_data",
                    "image_root",
                    "voc_train_sets",
                    "class_names",
                    "box_policy",
                    "clip_tolerance",
                    "oracle",
                    "unlabelled_data",
                )
            ]
            + [str(run_dir) if cfg.oracle == "human" else None],
            default=str,
        )
        if key not in self._pools:
            try:
                dataset = run_pool(cfg, check_images=False)
                if dataset is not None and cfg.oracle == "human":  # the unlabelled folder's images, as labelled
                    from ..al.annotation import apply_imports

                    apply_imports(run_dir, dataset)
                self._pools[key] = (dataset, None) if dataset is not None else (None, "the config has no train split")
            except (OSError, ValueError) as exc:
                self._pools[key] = (None, f"reading the training split {cfg.train_data}: {exc}")
        return self._pools[key]

    def figure(self, pool, pick: dict, predictions: dict | None, name: str, strategy: str) -> str:
        """A ``<figure>``: the thumbnail (or a placeholder saying why there is none) and the reason for the pick."""
        index, image_id = pick.get("index"), pick.get("image_id")
        notes, drawn = [], None
        if pool is None:
            notes.append("pool unavailable")
        elif isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(pool):
            notes.append(f"index {index!r} is not in the pool of {len(pool)} images")
        elif image_id is not None and pool.records[index].image_id != str(image_id):
            notes.append(
                f"pool index {index} is image {pool.records[index].image_id!r}, not {image_id!r}: "
                "the training split changed since the run"
            )
        else:
            record, predicted = pool.records[index], []
            if predictions is not None and record.image_id in predictions:
                try:
                    predicted = _predicted_boxes(predictions[record.image_id], self.min_score)
                except (TypeError, ValueError) as exc:
                    notes.append(f"predictions of this image malformed ({exc})")
            drawn = self._draw(record, pool.class_names, predicted, self.dir / name)
            if isinstance(drawn, str):
                notes.append(drawn)
                drawn = None
        if drawn is not None:
            image = (
                f'<img src="thumbs/{_esc(name)}" width="{drawn[0]}" height="{drawn[1]}" alt="{_esc(str(image_id))}">'
            )
        else:
            image = f'<div class="placeholder" title="{_esc(notes[0])}">image unavailable</div>'
        boxes = pick.get("boxes")
        detail = "image id unknown" if image_id is None else str(image_id)
        detail += f" · {boxes} box(es)" if isinstance(boxes, int) else ""
        extra = "".join(f'<br><span class="warning">{_esc(n)}</span>' for n in notes)
        return (
            f'<figure class="thumb">{image}<figcaption>{_esc(_reason(pick, strategy))}<br>'
            f'<span class="id">{_esc(detail)}</span>{extra}</figcaption></figure>'
        )

    def _draw(self, record, class_names: list[str], predicted: list, path: Path) -> tuple[int, int] | str:
        """Write the thumbnail of ``record`` with its boxes; its size, or why it could not be read."""
        from PIL import Image, ImageDraw

        from ..data.torch_dataset import load_image

        try:
            pixels = load_image(record.file_name, record.image_index)  # float32[3, H, W] in [0, 1]
        except (OSError, ValueError) as exc:
            return f"image unreadable: {exc}"
        image = Image.fromarray(pixels.mul(255).round().byte().permute(1, 2, 0).numpy())
        scale = self.size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR,
        )
        pen = ImageDraw.Draw(image)
        name_of = lambda label: class_names[label - 1] if 1 <= label <= len(class_names) else f"class {label}"
        for box, label in zip(record.boxes, record.labels):
            x1, y1, x2, y2 = (float(v) * scale for v in box)
            pen.rectangle((x1, y1, x2, y2), outline=_GT_COLOR, width=2)
            pen.text((x1 + 2, y1 + 1), name_of(int(label)), fill=_GT_COLOR)
        for box, score, label in predicted:
            x1, y1, x2, y2 = (float(v) * scale for v in box)
            pen.rectangle((x1, y1, x2, y2), outline=_PRED_COLOR, width=1)
            pen.text((x1 + 2, max(0.0, y2 - 11)), f"{name_of(label)} {score:.2f}", fill=_PRED_COLOR)
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
        return image.size


THUMB_LEGEND = (
    "<p>Each cycle's picks, first by rank (rank 1 = picked first), captioned with the strategy's score. "
    '<span style="color:#28c828">Green</span>: the ground-truth boxes the oracle revealed. '
    '<span style="color:#ff8c00">Orange</span>: the cycle model\'s predicted boxes with their scores, '
    "drawn when RUN/cycles/t/predictions.json exists (the report runs no model).</p>"
)
