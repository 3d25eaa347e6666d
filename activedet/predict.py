"""``activedet predict``: the detections of single images with their uncertainty, as the strategy sees them.

For each image: every box with its class, score and per-box uncertainty, and the image's score under the config's
strategy (the number the loop would rank it by). Per-box uncertainty columns:

* ``least_confidence`` / ``margin`` / ``entropy``: when the config's strategy is one of them, its per-detection
  value (:func:`activedet.strategies.uncertainty.detection_uncertainty`);
* the columns a method package declares for a ``Detections.extras`` key the prediction carries (``BOX_COLUMNS`` of
  its ``scoring`` module, :class:`activedet.plugins.BoxColumns`), those marked ``always``.

With ``uncertainty=True`` (``activedet predict --uncertainty``) every per-box uncertainty the model can give:

* ``entropy``: binary entropy of the box's score (any detector);
* every column the method packages declare for the extras keys the prediction carries;
* the prediction is made by the first of the method packages' ``PREDICTORS`` that applies to the model (several
  passes or members, when the model has them), unless the strategy brings its own predictor.

``draw`` writes a PNG per image with the boxes, labels, scores and uncertainties.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .config import Config, _strategy
from .data.images import ImageDecodeError
from .data.torch_dataset import load_image
from .data.validate import DatasetWarning
from .engine import distributed as dist_utils
from .engine.checkpoint import load_checkpoint
from .models import Detections
from .plugins import BoxColumns, collect
from .strategies.uncertainty import MEASURES, detection_uncertainty

__all__ = ["predict_images", "format_predictions", "draw_predictions"]

#: short labels drawn on images (the method packages' columns bring their own)
_SHORT = {"entropy": "H"}


def _box_columns() -> dict[str, BoxColumns]:
    """Every method package's ``BOX_COLUMNS`` (extras key -> columns)."""
    return collect("scoring", "BOX_COLUMNS")


def predict_images(
    cfg: Config,
    checkpoint: str | Path,
    images: list[str | Path],
    *,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    min_score: float = 0.0,
    uncertainty: bool = False,
) -> list[dict[str, Any]]:
    """Detections of each image file with per-box uncertainties and the image score (module docstring).

    Args:
        cfg: the config the checkpoint was trained with (detector, strategy).
        checkpoint: a ``.pt`` file with a ``"model"`` state (``activedet train`` / a run's ``cycles/T/model.pt``).
        images: image files.
        num_classes, class_names: the label space; default: read from the config's training data.
        min_score: boxes below this score are left out of ``boxes`` (``detections`` counts them all, and the image
            score uses every detection).
        uncertainty: add every per-box uncertainty the model can give (module docstring).
    """
    from .workflows import build_model, load_split

    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"image file(s) not found: {missing}")
    if num_classes is None or class_names is None:
        names = load_split(cfg, "train").class_names
        class_names, num_classes = class_names or list(names), num_classes or len(names)
    strategy = _strategy(cfg)
    model = build_model(cfg, num_classes)
    state = load_checkpoint(checkpoint)
    if "model" not in state:
        raise ValueError(f"{checkpoint}: no 'model' entry; expected a checkpoint written by activedet train/run")
    model.load_state_dict(state["model"])
    model.to(dist_utils.resolve_device(cfg.device))
    predictor = _predictor(cfg, model, strategy, uncertainty)
    provides = getattr(predictor, "PROVIDES", frozenset())
    shown = {key: c for key, c in _box_columns().items() if c.always or uncertainty}
    fields = set(strategy.needs) | ({"class_probs"} & provides)
    for c in shown.values():
        fields |= c.fields & provides
    # a list of criteria shows its first (the uncertainty that shortlists), with that criterion's own options
    first, options = (
        (cfg.strategy[0], cfg.strategy_options.get(cfg.strategy[0], {}))
        if isinstance(cfg.strategy, list)
        else (strategy.name, cfg.strategy_options)
    )
    measure = first if first in MEASURES else None
    results = []
    for path in images:
        try:
            image = load_image(path)
        except ImageDecodeError as exc:
            if cfg.bad_images != "skip":
                raise
            warnings.warn(DatasetWarning(f"bad_images: skip: left {path} out: {exc.reason}"), stacklevel=2)
            continue
        det = predictor.predict([image.to(next(model.parameters()).device)], fields=fields)[0].to("cpu")
        columns = _columns(det, measure, bool(options.get("use_class_probs", False)), uncertainty, shown)
        # a pool-normalised score has no meaning for one image: None
        score = strategy.score(det) if strategy.score is not None and strategy.combine is None else None
        keep = det.scores >= min_score
        boxes = []
        for j in torch.nonzero(keep).flatten().tolist():
            label = int(det.labels[j])
            boxes.append(
                {
                    "box": [round(float(v), 1) for v in det.boxes[j]],
                    "label": label,
                    "class": class_names[label - 1] if label - 1 < len(class_names) else str(label),
                    "score": float(det.scores[j]),
                    **{k: float(v[j]) for k, v in columns.items()},
                }
            )
        results.append(
            {
                "image": str(path),
                "width": int(image.shape[-1]),
                "height": int(image.shape[-2]),
                "strategy": strategy.name,
                "image_score": score,
                "detections": len(det),
                "min_score": min_score,
                "boxes": boxes,
            }
        )
    return results


def _predictor(cfg: Config, model: torch.nn.Module, strategy, uncertainty: bool):
    """What predicts: the strategy's own predictor, else, for ``--uncertainty``, the first of the method packages'
    ``PREDICTORS`` that applies to the model, else the model."""
    if strategy.predictor is not None and any(stage.needs_val for stage in strategy.stages):
        # a predictor that needs the validation split: the checkpoint's training split stands for the labelled set
        from .strategies.base import ScoringContext
        from .workflows import load_split

        context = ScoringContext(
            labelled=load_split(cfg, "train"),
            val=load_split(cfg, "val"),
            device=dist_utils.resolve_device(cfg.device),
            seed=cfg.seed,
        )
        return strategy.predictor(model, context)
    if strategy.predictor is not None:
        return strategy.predictor(model)
    if uncertainty:
        for make in collect("scoring", "PREDICTORS").values():
            predictor = make(model, cfg.strategy_options)
            if predictor is not None:
                return predictor
    return model


def _columns(
    det: Detections, measure: str | None, use_probs: bool, uncertainty: bool, shown: dict[str, BoxColumns]
) -> dict[str, torch.Tensor]:
    columns: dict[str, torch.Tensor] = {}
    if measure is not None:
        columns[measure] = detection_uncertainty(det, measure, use_probs)
    if uncertainty:
        columns.setdefault("entropy", detection_uncertainty(det, "entropy", False))
    for key, c in shown.items():
        if det.extras.get(key) is not None:
            columns.update(c.columns(det))
    return columns


def format_predictions(results: list[dict[str, Any]]) -> str:
    """A plain-text table per image."""
    lines = []
    for item in results:
        score = (
            "none (no detection to score, or a score normalised over the whole pool)"
            if item["image_score"] is None
            else f"{item['image_score']:.6g}"
        )
        total, shown = item["detections"], len(item["boxes"])
        listed = (
            f"all {total} shown"
            if shown == total
            else f"{shown} shown: those with score >= {item.get('min_score', 0.0):g}"
        )
        basis = f" (from all {total} detections)" if item["image_score"] is not None and shown != total else ""
        lines.append(
            f"{item['image']}  ({item['width']}x{item['height']}; {total} detection(s), {listed}); "
            f"{item['strategy']} image score: {score}{basis}"
        )
        extra = [k for k in item["boxes"][0] if k not in ("box", "label", "class", "score")] if item["boxes"] else []
        lines.append(
            "  "
            + "  ".join([f"{'class':>12s}", f"{'score':>6s}", *[f"{k:>16s}" for k in extra], "box (x1, y1, x2, y2)"])
        )
        for b in item["boxes"]:
            lines.append(
                "  "
                + "  ".join(
                    [f"{b['class']:>12s}", f"{b['score']:6.3f}", *[f"{b[k]:16.6g}" for k in extra], str(b["box"])]
                )
            )
        if not item["boxes"]:
            lines.append("  (no box at or above the score threshold)")
    return "\n".join(lines)


def draw_predictions(results: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write ``OUT/<image stem>.png`` with each box, its class, score and uncertainty columns (the first above the
    box, the others inside it)."""
    from PIL import Image, ImageDraw

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    short = dict(_SHORT)
    for c in _box_columns().values():
        short.update(c.short)
    written = []
    for k, item in enumerate(results):
        pixels = load_image(item["image"])  # the pixels the model saw (high bit depths scaled as in training)
        canvas = Image.fromarray(pixels.mul(255).round().byte().permute(1, 2, 0).numpy())
        scale = max(1, 384 // max(canvas.size))
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
        pen = ImageDraw.Draw(canvas)
        for b in item["boxes"]:
            x1, y1, x2, y2 = (v * scale for v in b["box"])
            pen.rectangle((x1, y1, x2, y2), outline=(255, 40, 40), width=2)
            extra = [
                f"{short.get(key, key[:4])} {b[key]:.2g}" for key in b if key not in ("box", "label", "class", "score")
            ]
            pen.text(
                (x1 + 2, max(0, y1 - 11)), " ".join([b["class"], f"{b['score']:.2f}", *extra[:1]]), fill=(255, 255, 0)
            )
            for row, text in enumerate(extra[1:]):  # every further uncertainty on its own line inside the box
                pen.text((x1 + 2, y1 + 2 + 10 * row), text, fill=(255, 255, 0))
        if item["image_score"] is not None:
            pen.text((2, 2), f"{item['strategy']}: {item['image_score']:.3g}", fill=(0, 255, 255))
        path = out / f"{k:03d}_{Path(item['image']).stem}.png"

        def write(tmp: Path, image=canvas) -> None:
            image.save(tmp, format="PNG")

        atomic_write(path, write)
        written.append(path)
    return written
