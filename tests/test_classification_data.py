"""Classification data: ImageFolder and CIFAR binary readers/writers, one whole-image box per image, the digits
benchmark generator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from activedet.cli import main
from activedet.data.classification import (
    DIGITS_SPLITS,
    generate_digits_classification,
    read_cifar,
    read_cifar_image,
    read_imagefolder,
    scan_imagefolder,
    write_cifar,
    write_imagefolder,
)
from activedet.data.io import read_dataset, validate_path, write_dataset
from activedet.data.records import DatasetError, ImageRecord
from activedet.data.torch_dataset import DetectionTorchDataset, load_image
from activedet.data.validate import DatasetWarning
from activedet.engine.pseudo import load_pseudo_labels, pseudo_label_records, save_pseudo_labels
from activedet.models import Detections


def random_images(n: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    """``uint8[H, W, 3]`` of a ``float32[3, H, W]`` image in [0, 1]."""
    return image.mul(255).round().byte().permute(1, 2, 0).numpy()


def assert_whole_image_boxes(dataset) -> None:
    for record in dataset:
        assert record.boxes.tolist() == [[0, 0, record.width, record.height]] and record.num_boxes == 1


# ----------------------------------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def folder(tmp_path):
    """Classes cat (2 images, 20x12 px) and dog (1 image plus one in a nested folder)."""
    images = random_images(3, height=12, width=20)
    root = write_imagefolder(images, [2, 1, 1], ["cat", "dog"], tmp_path / "data", stems=["b", "a", "c"])
    write_imagefolder(images[:1], [1], ["nested"], root / "dog")  # dog/nested/img_00000.png
    return root, images


def test_imagefolder_round_trip(folder):
    root, images = folder
    dataset = read_imagefolder(root)
    assert dataset.class_names == ["cat", "dog"]
    assert [r.image_id for r in dataset] == ["cat/a", "cat/c", "dog/b", "dog/nested/img_00000"]
    assert [int(r.labels[0]) for r in dataset] == [1, 1, 2, 2]
    assert all((r.width, r.height, r.image_index) == (20, 12, None) for r in dataset)
    assert_whole_image_boxes(dataset)
    assert dataset.class_counts().tolist() == [2, 2]
    image, target = DetectionTorchDataset(dataset)[2]
    assert np.array_equal(as_uint8(image), images[0])
    assert target["labels"].tolist() == [2] and target["boxes"].tolist() == [[0, 0, 20, 12]]
    assert validate_path("imagefolder", root) == []
    assert [r.image_id for r in read_dataset("imagefolder", root)] == [r.image_id for r in dataset]


def test_imagefolder_class_names_fix_the_label_order_and_must_name_every_folder(folder):
    root, _ = folder
    dataset = read_imagefolder(root, class_names=["dog", "cat"])
    assert [(r.image_id, int(r.labels[0])) for r in dataset][:2] == [("dog/b", 1), ("dog/nested/img_00000", 1)]
    with pytest.warns(DatasetWarning, match=r"class 'emu' has no folder .*, so it has no images"):
        assert read_imagefolder(root, class_names=["cat", "dog", "emu"]).class_names == ["cat", "dog", "emu"]
    with pytest.raises(DatasetError, match=r"dog/: class folder 'dog' is not one of class_names \['cat'\]"):
        read_imagefolder(root, class_names=["cat"])
    with pytest.raises(ValueError, match="The 'class_names' parameter of read_imagefolder must be a non-empty list"):
        read_imagefolder(root, class_names=["cat", "cat"])


def test_imagefolder_corrupt_image_is_an_error_naming_the_file(folder):
    root, _ = folder
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"dog/broken.png: cannot read image file .*broken.png"):
        read_imagefolder(root)


def test_imagefolder_warnings_and_ignored_files(folder):
    root, _ = folder
    (root / "emu").mkdir()
    (root / "cat" / "notes.txt").write_text("x")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"ignored")
    dataset, problems = scan_imagefolder(root)
    assert dataset.class_names == ["cat", "dog", "emu"] and len(dataset) == 4
    assert [(p.location, p.severity) for p in problems] == [("cat/notes.txt", "warning"), ("emu/", "warning")]
    assert "class folder 'emu' has no images" in problems[1].message
    with pytest.warns(DatasetWarning, match="suffix '.txt' is not one of"):
        read_imagefolder(root)


def test_imagefolder_empty_or_missing_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no images found; expected root/<class>/<image>"):
        read_imagefolder(tmp_path / "empty")
    assert "ImageFolder root does not exist" in scan_imagefolder(tmp_path / "missing")[1][0].message
    assert "path does not exist" in validate_path("imagefolder", tmp_path / "missing")[0].message


def test_write_imagefolder_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"labels' parameter of write_imagefolder must be 2 ints in 1..2"):
        write_imagefolder(random_images(2), [1, 3], ["a", "b"], tmp_path)
    with pytest.raises(ValueError, match="image 0 must be a uint8 HxWx3 RGB array"):
        write_imagefolder(np.zeros((1, 4, 4), np.uint8), [1], ["a"], tmp_path)
    with pytest.raises(ValueError, match="stems must be distinct within each class"):
        write_imagefolder(random_images(2), [1, 1], ["a"], tmp_path, stems=["x", "x"])
    with pytest.raises(ValueError, match="The 'fmt' parameter of write_dataset must be one of"):
        write_dataset(
            "imagefolder",
            read_imagefolder(write_imagefolder(random_images(1), [1], ["a"], tmp_path)),
            tmp_path / "copy",
        )


# ----------------------------------------------------------------------------------------------------------- CIFAR

CIFAR_LAYOUTS = {
    "cifar10": (
        "batches.meta.txt",
        ["data_batch_1", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        [0, 1, 0, 0, 0, 0],
    ),
    "cifar100": ("fine_label_names.txt", ["train"] * 6, [0, 1, 2, 3, 4, 5]),
}


@pytest.fixture(params=sorted(CIFAR_LAYOUTS))
def cifar(request, tmp_path):
    """A CIFAR directory of ``variant`` with 6 train and 2 test images of 3 classes."""
    images, labels = random_images(8), [1, 2, 3, 3, 2, 1, 3, 1]
    directory = tmp_path / {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}[request.param]
    write_cifar(images[:6], labels[:6], ["ant", "bee", "cow"], directory, variant=request.param)
    write_cifar(images[6:], labels[6:], ["ant", "bee", "cow"], directory, variant=request.param, split="test")
    return request.param, directory, images, labels


def test_cifar_round_trip_with_pixels(cifar):
    variant, directory, images, labels = cifar
    meta, stems, indices = CIFAR_LAYOUTS[variant]
    assert (directory / meta).read_text() == "ant\nbee\ncow\n"
    train = read_cifar(directory)
    assert train.class_names == ["ant", "bee", "cow"]
    assert [r.image_id for r in train] == [f"{s}/{i}" for s, i in zip(stems, indices)]
    assert [r.image_index for r in train] == indices
    assert [r.file_name.stem for r in train] == stems and all(r.file_name.suffix == ".bin" for r in train)
    assert [int(r.labels[0]) for r in train] == labels[:6]
    assert all((r.width, r.height) == (32, 32) for r in train)
    assert_whole_image_boxes(train)
    for record, image in zip(train, images):
        assert np.array_equal(read_cifar_image(record.file_name, record.image_index), image)
        assert np.array_equal(as_uint8(load_image(record.file_name, record.image_index)), image)
    test = read_cifar(directory, split="test")
    assert [int(r.labels[0]) for r in test] == labels[6:]
    torch_test = DetectionTorchDataset(test)
    for position, image in enumerate(images[6:]):
        pixels, target = torch_test[position]
        assert np.array_equal(as_uint8(pixels), image) and target["boxes"].tolist() == [[0, 0, 32, 32]]
    assert validate_path("cifar", directory) == [] and validate_path("cifar", directory, split="test") == []


def test_cifar_truncated_file(cifar):
    variant, directory, _, _ = cifar
    name, record = ("data_batch_2.bin", 3073) if variant == "cifar10" else ("train.bin", 3074)
    data = (directory / name).read_bytes()
    (directory / name).write_bytes(data[:-10])
    title = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[variant]
    with pytest.raises(
        DatasetError,
        match=rf"{name}: file size {len(data) - 10} bytes is not a multiple of the "
        rf"{record}-byte {title} record",
    ):
        read_cifar(directory)
    assert len(read_cifar(directory, split="test")) == 2


def test_cifar_label_byte_out_of_range(cifar):
    variant, directory, _, _ = cifar
    name, record, offset = ("test_batch.bin", 3073, 0) if variant == "cifar10" else ("test.bin", 3074, 1)
    data = bytearray((directory / name).read_bytes())
    data[record + offset] = 7
    (directory / name).write_bytes(bytes(data))
    with pytest.raises(
        DatasetError,
        match=rf"{name}: record 1: label byte 7 is not below the number of classes "
        r"\(3\)",
    ):
        read_cifar(directory, split="test")
    assert len(read_cifar(directory, split="test", class_names=[str(i) for i in range(8)])) == 2
    problems = validate_path("cifar", directory, split="test")
    assert [p.location for p in problems] == [f"{name}: record 1"]


def test_cifar_missing_files(cifar, tmp_path):
    variant, directory, _, _ = cifar
    (directory / ("data_batch_3.bin" if variant == "cifar10" else "train.bin")).unlink()
    expected = (
        r"CIFAR-10 train split: missing data_batch_3.bin .* holds CIFAR-10 \(cifar-10-batches-bin/\): "
        r"data_batch_1.bin, .*, data_batch_5.bin, test_batch.bin and batches.meta.txt"
        if variant == "cifar10"
        else r"CIFAR-100 train split: missing train.bin .* holds CIFAR-100 \(cifar-100-binary/\): train.bin, "
        r"test.bin and fine_label_names.txt"
    )
    with pytest.raises(DatasetError, match=expected):
        read_cifar(directory)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match=r"no CIFAR binary files found -> expected CIFAR-10 .*; or CIFAR-100"):
        read_cifar(tmp_path / "nothing")
    assert validate_path("cifar", tmp_path)[0].hint == f"give {directory} instead"  # given the parent


def test_cifar_meta_missing_and_cli_validate(cifar, capsys):
    variant, directory, _, _ = cifar
    assert main(["validate", "cifar", str(directory)]) == 0
    (directory / CIFAR_LAYOUTS[variant][0]).unlink()
    assert len(read_cifar(directory, class_names=["a", "b", "c"])) == 6
    with pytest.raises(DatasetError, match="cannot read the class names"):
        read_cifar(directory)
    capsys.readouterr()
    assert main(["validate", "cifar", str(directory), "--class-names", "a", "b", "c", "--split", "test"]) == 0
    assert main(["validate", "cifar", str(directory)]) == 1
    out = capsys.readouterr().out
    assert out.count("cannot read the class names") == 1 and "1 error, 0 warnings" in out


def test_read_cifar_image_checks_the_file_name_and_index(cifar):
    variant, directory, _, _ = cifar
    name = "test_batch.bin" if variant == "cifar10" else "test.bin"
    with pytest.raises(ValueError, match=r"no record 2; the file holds 2 complete records"):
        read_cifar_image(directory / name, 2)
    with pytest.raises(ValueError, match="not an official CIFAR binary file name"):
        load_image(directory / "other.bin", 0)


def test_record_image_index_is_checked_and_kept_by_copies(cifar, tmp_path):
    record = ImageRecord("a/1", "a.bin", 32, 32, [[0, 0, 32, 32]], [1], image_index=1)
    assert record.subset(np.array([True])).image_index == 1
    pool = read_cifar(cifar[1])
    guess = Detections(torch.tensor([[0.0, 0, 32, 32]]), torch.tensor([0.9]), torch.tensor([2]))
    pseudo = pseudo_label_records([(1, guess)], pool)
    assert pseudo[0].image_index == 1 and pseudo[0].image_id == pool[1].image_id
    save_pseudo_labels(tmp_path / "pseudo.json", pseudo)
    assert load_pseudo_labels(tmp_path / "pseudo.json", pool)[0].image_index == 1
    with pytest.raises(ValueError, match="image_index must be None or an int >= 0. Got -1 instead"):
        ImageRecord("a/1", "a.bin", 32, 32, image_index=-1)


# --------------------------------------------------------------------------------------------------------- digits


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_digits_classification(tmp_path, capsys):
    assert main(["generate-data", "digits-classification", "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    assert "train: 1197 images" in capsys.readouterr().out
    root = generate_digits_classification(tmp_path / "b", seed=3)
    assert tree_digest(tmp_path / "a") == tree_digest(root)
    splits = {split: read_imagefolder(root / split) for split in ("train", "val", "test")}
    assert {split: len(d) for split, d in splits.items()} == DIGITS_SPLITS
    assert sum(DIGITS_SPLITS.values()) == 1797
    samples = {split: {r.file_name.name for r in d} for split, d in splits.items()}
    assert len(set.union(*samples.values())) == 1797  # disjoint: every load_digits sample exactly once
    for dataset in splits.values():
        assert dataset.class_names == [str(d) for d in range(10)]
        assert dataset.class_counts().min() >= 0.9 * len(dataset) / 10  # stratified
        assert (dataset[0].width, dataset[0].height) == (32, 32)
    image = as_uint8(load_image(splits["test"][0].file_name))
    assert (image[..., 0] == image[..., 2]).all() and image.max() > 200
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["splits"]["val"]["class_counts"] == dict(
        zip(splits["val"].class_names, splits["val"].class_counts().tolist())
    )
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        generate_digits_classification(root)
