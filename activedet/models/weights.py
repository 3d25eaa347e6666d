"""Weight loading for detectors and backbones.

Every ``weights`` / ``weights_backbone`` argument of the builders accepts one of:

* ``None``: random initialisation (the builders' default; nothing is downloaded).
* a **local file** (``str`` or ``os.PathLike``): a ``state_dict`` saved with ``torch.save``, or an activedet
  checkpoint, i.e. a dict whose ``"model"`` entry is the ``state_dict``. Loaded with
  ``torch.load(..., weights_only=True)`` on the CPU; a ``"module."`` prefix left by DistributedDataParallel
  is removed. A string is read as a path when it names an existing file, contains a path separator or ends
  in ``.pt``, ``.pth``, ``.ckpt``, ``.bin`` or ``.tar``.
* a **torchvision weights name**: ``"DEFAULT"``, a member name (``"COCO_V1"``) or ``"EnumClass.MEMBER"``
  (``"RetinaNet_ResNet50_FPN_Weights.COCO_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``), or the enum member
  itself. Only the enums whose architecture the builder really constructs are accepted; torchvision
  downloads the file on first use (this needs network access).

Matching is strict by default: any missing key, unexpected key or shape mismatch raises ``ValueError``
listing a few of each. With ``strict=False`` (the builders' ``weights_strict=False``) every tensor whose
name and shape match is loaded and the rest is skipped with a ``UserWarning`` naming what was skipped; this
is how to start from COCO weights with a different number of classes (the class-specific layers, e.g.
``head.classification_head.cls_logits`` or ``roi_heads.box_predictor``, keep their random initialisation).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

__all__ = [
    "WeightsSpec",
    "LoadResult",
    "is_local_file",
    "read_state_dict",
    "resolve_weights_enum",
    "resolve_weights",
    "load_state_dict_into",
    "load_weights",
]

WeightsSpec = str | os.PathLike | WeightsEnum | None

_ADVICE = (
    "Check that the builder arguments (backbone, variant, num_classes, norm) match those the weights were "
    "trained with, or pass weights_strict=False to load only the tensors whose names and shapes match."
)
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")
_ENUM_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class LoadResult:
    """What :func:`load_state_dict_into` did not load (all empty after a successful strict load)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: checkpoint [..] vs model [..]"

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 5) -> str:
        parts = []
        for title, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape-mismatched", self.mismatched),
        ):
            if items:
                more = f" and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{len(items)} {title} key(s): {items[:limit]}{more}")
        return "; ".join(parts)


def is_local_file(spec: WeightsSpec) -> bool:
    """Whether ``spec`` is read as a path (see the module docstring) rather than a torchvision weights name."""
    if spec is None or isinstance(spec, WeightsEnum):
        return False
    if isinstance(spec, os.PathLike):
        return True
    text = str(spec)
    return (
        os.path.isfile(text)
        or "/" in text
        or os.sep in text
        or text.lower().endswith(_FILE_SUFFIXES)
        or not _ENUM_NAME.match(text)
    )


def read_state_dict(path: str | os.PathLike, *, func: str | None = None, param: str | None = None) -> dict[str, Tensor]:
    """The ``state_dict`` stored at ``path`` (a bare state_dict or a checkpoint dict with a ``"model"`` key);
    errors name the ``param`` parameter of ``func`` when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file {str(path)!r} does not exist. Pass None, an existing file saved "
            f"with torch.save, or a torchvision weights name such as 'DEFAULT'."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch.save file (text, an image, a truncated download) or unsafe pickle
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        subject = (
            f"The {param!r} parameter of {func} names the file {str(path)!r}, which"
            if param
            else f"Weights file {str(path)!r}"
        )
        raise ValueError(
            f"{subject} is not a weights file that torch.load(weights_only=True) can read "
            f"({type(exc).__name__}: {reason}). Pass a state_dict or an activedet checkpoint saved with "
            "torch.save, or a torchvision weights name such as 'DEFAULT'."
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(
            f"Weights file {str(path)!r} holds a {type(loaded).__name__}, not a state_dict (a dict "
            f"of tensors) nor a checkpoint dict with a 'model' state_dict."
        )
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module.") :]: v for k, v in loaded.items()}
    return loaded


def resolve_weights_enum(
    spec: str | WeightsEnum, enums: Sequence[type[WeightsEnum]], *, func: str, param: str
) -> WeightsEnum:
    """The member of one of ``enums`` named by ``spec`` (``"DEFAULT"`` means ``enums[0].DEFAULT``).

    Raises ``ValueError`` naming every accepted spelling when ``spec`` names none of them.
    """
    if isinstance(spec, WeightsEnum):
        if type(spec) in enums:
            return spec
        spec = f"{type(spec).__name__}.{spec.name}"
    accepted = {}
    for position, enum in enumerate(enums):
        for name in enum.__members__:
            accepted[f"{enum.__name__}.{name}"] = enum[name]
            if position == 0:
                accepted[name] = enum[name]
    if spec not in accepted and not accepted:
        raise ValueError(
            f"The {param!r} parameter of {func} must be None or a path to an existing weights file "
            f"(this architecture has no torchvision weights). Got {spec!r} instead."
        )
    if spec not in accepted:
        raise ValueError(
            f"The {param!r} parameter of {func} must be None, a path to an existing weights file, "
            f"or a torchvision weights name in {sorted(accepted)}. Got {spec!r} instead."
        )
    return accepted[spec]


def resolve_weights(
    spec: WeightsSpec, enums: Sequence[type[WeightsEnum]] = (), *, func: str, param: str
) -> Path | WeightsEnum | None:
    """Check ``spec`` without loading anything: an existing :class:`Path`, a torchvision enum member, or None.

    Builders call this first so that a typo fails before a large model is constructed.
    """
    if spec is None:
        return None
    if is_local_file(spec):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"The {param!r} parameter of {func} names the file {str(path)!r}, which does "
                f"not exist. Pass None, an existing file saved with torch.save, or a "
                f"torchvision weights name such as 'DEFAULT'."
            )
        return path
    return resolve_weights_enum(spec, enums, func=func, param=param)


def load_state_dict_into(
    model: nn.Module, state_dict: dict[str, Tensor], *, strict: bool = True, source: str = "the weights"
) -> LoadResult:
    """Load ``state_dict`` into ``model``; see the module docstring for ``strict``.

    Shape-mismatched tensors are never loaded. With ``strict=True`` a non-empty :class:`LoadResult` raises
    ``ValueError`` (the matching tensors may already have been copied into ``model``).
    """
    own_shapes = {k: v.shape for k, v in model.state_dict().items()}
    result = LoadResult()
    to_load = {}
    for name, tensor in state_dict.items():
        if name in own_shapes and tensor.shape != own_shapes[name]:
            result.mismatched.append(f"{name}: {list(tensor.shape)} vs {list(own_shapes[name])}")
        else:
            to_load[name] = tensor
    # strict=False here so torchvision's own version hooks (old key names) still apply; we report ourselves.
    try:
        incompatible = model.load_state_dict(to_load, strict=False)
    except RuntimeError as error:  # a shape mismatch that appeared only after such a hook renamed keys
        raise ValueError(f"Could not load {source} into {type(model).__name__}: {error}. {_ADVICE}") from error
    result.missing = [k for k in incompatible.missing_keys if not any(m.startswith(k + ":") for m in result.mismatched)]
    result.unexpected = list(incompatible.unexpected_keys)
    if result and strict:
        raise ValueError(f"Could not load {source} into {type(model).__name__}: {result.describe()}. {_ADVICE}")
    if result:
        warnings.warn(
            f"Loaded {source} partially into {type(model).__name__}; skipped {result.describe()}.", stacklevel=3
        )
    return result


def load_weights(
    model: nn.Module,
    spec: WeightsSpec,
    enums: Sequence[type[WeightsEnum]] = (),
    *,
    strict: bool = True,
    func: str = "load_weights",
    param: str = "weights",
) -> WeightsEnum | None:
    """Load ``spec`` (None, a local file or a torchvision weights name) into ``model``.

    Returns the torchvision enum member used, or ``None`` (nothing loaded, or a local file).
    """
    resolved = resolve_weights(spec, enums, func=func, param=param)
    if resolved is None:
        return None
    if isinstance(resolved, Path):
        load_state_dict_into(
            model, read_state_dict(resolved, func=func, param=param), strict=strict, source=f"{str(resolved)!r}"
        )
        return None
    member = resolved
    state_dict = member.get_state_dict(progress=True, check_hash=True)
    load_state_dict_into(model, state_dict, strict=strict, source=f"torchvision weights {member}")
    return member
