"""The splits of a config, read as a command needs them: ``train``/``val``/``test``, and a run's pool.

Torch-free, so that commands that only look at a run (``activedet status``) start quickly; the workflows that
train and evaluate (:mod:`activedet.workflows`) read their data through these functions too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .al.rundir import RunDir
from .config import CLASSIFICATION_FORMATS, Config, config_error
from .data.io import read_dataset
from .data.records import DatasetError, DetectionDataset, ImageRecord

__all__ = ["load_split", "without_bad_images", "check_classification_labels", "with_unlabelled_images", "run_pool"]
__all__ += ["pool_fingerprint", "check_run_pool"]


def load_split(
    cfg: Config, split: str, *, check_images: bool = True, deferred: list | None = None
) -> DetectionDataset | None:
    """Read the ``train``/``val``/``test`` split named by the config (``None`` when the config has none).

    ``check_images=False`` skips opening every image header of a VOC or COCO split (YOLO needs the sizes, class
    folders list their files): for readers of the records only, such as the HTML report.

    A COCO split is read through the pool index cached in the run's ``cache/`` folder. The cache is written only
    into a started run (its ``config.json`` exists), or, given ``deferred``, by the callables appended to it: a
    command that validates everything before writing anything calls them once it has."""
    path = getattr(cfg, f"{split}_data")
    if path is None:
        return None
    if not Path(path).exists():
        raise config_error(
            cfg,
            f"{split}_data",
            f"{path} does not exist; give the path of the {split} split's "
            "annotations (a relative path is read from the config file's folder)",
        )
    try:
        return _read_split(cfg, split, path, check_images, deferred)
    except DatasetError as exc:  # name the config file and key; the problems name the files inside the data
        sets = f" with 'voc_{split}_sets' {getattr(cfg, f'voc_{split}_sets')}" if cfg.data_format == "voc" else ""
        raise DatasetError(
            exc.problems, f"{getattr(cfg, 'source', 'config')}: key '{split}_data' ({path}{sets})"
        ) from None


def _read_split(
    cfg: Config, split: str, path: str, check_images: bool, deferred: list | None
) -> DetectionDataset | None:
    if cfg.data_format in CLASSIFICATION_FORMATS:
        options: dict[str, Any] = {} if cfg.class_names is None else {"class_names": cfg.class_names}
        if cfg.data_format == "cifar":
            options["split"] = "test" if split == "test" else "train"
        data = read_dataset(cfg.data_format, path, **options)
        return without_bad_images(data, split) if cfg.bad_images == "skip" else data
    options = {"box_policy": cfg.box_policy, "clip_tolerance": cfg.clip_tolerance, "check_images": check_images}
    if cfg.data_format == "voc":
        path_sets = getattr(cfg, f"voc_{split}_sets")
        if not path_sets:
            return None
        options["sets"] = tuple(tuple(entry.split("/")) for entry in path_sets)
        if cfg.class_names is not None:
            options["class_names"] = cfg.class_names
    image_root = (getattr(cfg, f"{split}_image_root") if split != "train" else None) or cfg.image_root
    if cfg.data_format == "coco" and image_root is not None:
        options["image_root"] = image_root
    if cfg.data_format == "coco":  # a columnar index, built once per source file and memory-mapped afterwards
        from .data.coco_index import scan_coco_index
        from .data.index import cached_index

        run = RunDir(cfg.out_dir)
        save = True if run.config.is_file() else deferred if deferred is not None else False
        data = cached_index(
            "coco", path, cache_dir=run.cache, scan=scan_coco_index, what=f"COCO file {path}", save=save, **options
        ).dataset()
    else:
        data = read_dataset(cfg.data_format, path, **options)
    return without_bad_images(data, split) if cfg.bad_images == "skip" and check_images else data


def without_bad_images(data: DetectionDataset, split: str) -> DetectionDataset:
    """``data`` without the records whose image file cannot be decoded in full (``bad_images: skip``), with one
    warning naming them."""
    import warnings

    from .data.images import decode_problems
    from .data.validate import DatasetWarning

    problems = decode_problems((r.file_name, str(i)) for i, r in enumerate(data.records) if r.image_index is None)
    if not problems:
        return data
    bad = {int(p.location) for p in problems}
    shown = "\n".join(f"  {p.message}" for p in problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    warnings.warn(
        DatasetWarning(
            f"bad_images: skip: left {len(bad)} of the {len(data)} images of the {split} split "
            f"out, their files cannot be decoded:\n{shown}{more}"
        ),
        stacklevel=2,
    )
    return data.subset([i for i in range(len(data)) if i not in bad])


def check_classification_labels(cfg: Config, data: DetectionDataset | None, split: str) -> None:
    """With ``detector: classifier`` every image needs exactly one label (one whole-image box); checked before any
    work so that bad data never stops a run halfway."""
    if cfg.detector != "classifier" or data is None:
        return
    bad = [r.image_id for r in data.records if r.num_boxes != 1]
    if bad:
        raise config_error(
            cfg,
            f"{split}_data",
            f"the {split} split ({getattr(cfg, f'{split}_data')}) has {len(bad)} "
            f"image(s) without exactly one label (e.g. {bad[:3]}); detector 'classifier' needs one "
            "class label per image: use data_format imagefolder/cifar, or give each image one "
            "whole-image box",
        )


def with_unlabelled_images(pool: DetectionDataset, folder: str | None) -> DetectionDataset:
    """``pool`` followed by every image under ``folder`` (recursively, sorted; ids = relative paths without the
    suffix), unlabelled: no boxes until people label them."""
    from .data.validate import read_image_size
    from .interop import export_file_name

    if folder is None:
        return pool
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"unlabelled_data {root} is not a directory; give the folder of images to label")
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
    known = {r.image_id for r in pool.records}
    records, problems, exported = [], [], {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()):
        image_id = path.relative_to(root).with_suffix("").as_posix()
        if image_id in known:
            problems.append(f"{path}: image id {image_id!r} is also in train_data")
            continue
        name = export_file_name(image_id, "")  # the name annotation tools get: sub-folders flattened
        if exported.setdefault(name, path) != path:
            problems.append(
                f"{path}: would be exported for labelling under the same name as {exported[name]} "
                f"({name!r}: a '/' becomes '__'); rename one of them"
            )
            continue
        size, problem = read_image_size(
            path, str(path), unreadable_hint="replace it with a valid image file, or move it out of the folder"
        )
        if problem is not None:
            problems.append(str(problem))
            continue
        records.append(ImageRecord(image_id, path, *size))
    if problems:
        raise ValueError(f"unlabelled_data {root}: {len(problems)} problem(s):\n" + "\n".join(problems[:20]))
    return DetectionDataset(list(pool.records) + records, pool.class_names, pool.category_ids, pool.root)


def run_pool(cfg: Config, *, check_images: bool = True, run_dir: str | Path | None = None) -> DetectionDataset | None:
    """The pool of a run, as the loop builds it (a human run: the labelled start, then the unlabelled folder);
    ``check_images`` as :func:`load_split`. Given the ``run_dir`` of a started run, its images must be those the
    run started with (:func:`check_run_pool`)."""
    train = load_split(cfg, "train", check_images=check_images)
    pool = with_unlabelled_images(train, cfg.unlabelled_data) if cfg.oracle == "human" and train is not None else train
    if run_dir is not None and pool is not None:
        check_run_pool(cfg, run_dir, pool_fingerprint(cfg, train, pool), pool)
    return pool


def pool_fingerprint(cfg: Config, train: DetectionDataset, pool: DetectionDataset) -> list[dict]:
    """The fingerprint of a run's ``pool`` (:mod:`activedet.al.fingerprint`): the ``train`` split, then (a human run)
    the images of the unlabelled folder that follow it in ``pool``."""
    from .al.fingerprint import part_fingerprint

    sets = cfg.voc_train_sets if cfg.data_format == "voc" else None
    parts = [part_fingerprint("train_data", cfg.train_data, cfg.data_format, train, sets=sets)]
    if cfg.oracle == "human" and cfg.unlabelled_data is not None:
        folder = DetectionDataset(pool.records[len(train) :], pool.class_names, pool.category_ids)
        parts.append(part_fingerprint("unlabelled_data", cfg.unlabelled_data, "folder", folder))
    return parts


def check_run_pool(cfg: Config, run_dir: str | Path, parts: list[dict], pool: DetectionDataset) -> None:
    """Raise :class:`~activedet.al.fingerprint.PoolChanged` when the run in ``run_dir`` started on other images than
    ``pool`` (fingerprint ``parts``). A run without ``pool.json`` (started by an older activedet) is checked
    against the image ids its ledger holds."""
    from .al.fingerprint import check_pool, load_fingerprint
    from .al.ledger import Ledger

    run = RunDir(run_dir)
    saved = load_fingerprint(run)
    if saved is None and not run.ledger.is_file():
        return
    check_pool(
        run_dir,
        saved,
        parts,
        config=str(getattr(cfg, "source", "config")),
        pool_ids=pool.image_ids,
        ledger_ids=(lambda: Ledger.load(run.ledger).pool_ids) if run.ledger.is_file() else None,
    )
