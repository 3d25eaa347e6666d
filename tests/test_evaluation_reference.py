"""activedet.evaluation against references computed in the test: pycocotools run directly on a COCO file, a straight
port of the VOC devkit's evaluation loop run on VOC XML files, and brute-force FROC for both hit rules."""

from __future__ import annotations

import contextlib
import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from activedet.data import read_coco, read_voc
from activedet.data.coco import write_coco
from activedet.data.records import DetectionDataset, ImageRecord
from activedet.evaluation import COCO_METRICS, coco_ap, evaluate, froc, voc_map

# ------------------------------------------------------------------------------------------------------ COCO

CATEGORIES = [(40, "kite"), (3, "car"), (17, "cat"), (8, "truck")]  # listed shuffled, ids gapped


def _coco_file(path, seed=0, num_images=40):
    """A COCO file with shuffled, gapped category ids, non-sequential image ids, empty images, crowd boxes and an
    ``area`` (a segment's, say) smaller than the box area, so that some objects change size bucket."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image_id = 1000 + 7 * i
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 200})
        for _ in range(int(rng.integers(0, 5)) if i % 5 else 0):  # every 5th image has no box
            w, h = (int(v) for v in rng.integers(8, 140, 2))
            x, y = int(rng.integers(0, 200 - w)), int(rng.integers(0, 200 - h))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "category_id": CATEGORIES[int(rng.integers(0, 4))][0],
                    "area": float(w * h * rng.uniform(0.3, 1.0)),
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
    data = {"images": images, "annotations": annotations, "categories": [{"id": c, "name": n} for c, n in CATEGORIES]}
    path.write_text(json.dumps(data))
    return data


def _coco_detections(data, seed=1):
    """Detections in the file's terms (original image and category ids, xywh) on a quarter-pixel grid, so that
    float32 records and float64 detections hold the same numbers: near-GT boxes, random ones, wrong classes."""
    rng = np.random.default_rng(seed)
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    results = []
    for image in data["images"][1:]:  # the first image gets no detection
        for a in by_image.get(image["id"], []):
            for _ in range(int(rng.integers(0, 3))):
                x, y, w, h = (np.array(a["bbox"], float) + np.round(rng.normal(0, 4, 4) * 4) / 4).tolist()
                cat = a["category_id"] if rng.random() < 0.8 else CATEGORIES[int(rng.integers(0, 4))][0]
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": cat,
                        "bbox": [max(x, 0.0), max(y, 0.0), max(w, 1.0), max(h, 1.0)],
                        "score": rng.random(),
                    }
                )
        for _ in range(int(rng.integers(0, 3))):
            w, h = (rng.integers(16, 400, 2) / 4).tolist()
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": CATEGORIES[int(rng.integers(0, 4))][0],
                    "bbox": [float(rng.integers(0, 400) / 4), float(rng.integers(0, 400) / 4), w, h],
                    "score": rng.random(),
                }
            )
    return results


def _pycocotools(path, results):
    """``(stats, {category id: AP})`` from pycocotools on the file itself; per-class AP read from
    ``eval["precision"]`` at each id's position in ``params.catIds``."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for cat_id, _ in CATEGORIES:
        p = precision[:, :, evaluator.params.catIds.index(cat_id)]
        per_class[cat_id] = float(np.mean(p[p > -1])) if (p > -1).any() else float("nan")
    return evaluator.stats, per_class


def _predictions(ds, results, image_ids):
    """Per record, the detections as xyxy with contiguous labels of ``ds``."""
    label_of = {c: i + 1 for i, c in enumerate(ds.category_ids)}
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    boxes, scores, labels = ([[] for _ in ds.records] for _ in range(3))
    for r in results:
        k = position[r["image_id"]]
        x, y, w, h = r["bbox"]
        boxes[k].append([x, y, x + w, y + h])
        scores[k].append(r["score"])
        labels[k].append(label_of[r["category_id"]])
    return [
        {"boxes": np.array(b, float).reshape(-1, 4), "scores": np.array(s, float), "labels": np.array(lab, int)}
        for b, s, lab in zip(boxes, scores, labels)
    ]


def _shuffled_labels(ds, order):
    """The same data with contiguous labels in another order: class ``order[k]`` of ``ds`` becomes label ``k + 1``,
    so ``category_ids`` are no longer ascending."""
    new_label = np.empty(ds.num_classes + 1, np.int64)
    new_label[np.array(order) + 1] = np.arange(1, ds.num_classes + 1)
    records = [
        ImageRecord(
            r.image_id,
            r.file_name,
            r.width,
            r.height,
            r.boxes,
            new_label[r.labels],
            r.difficult,
            r.iscrowd,
            area=r.area,
        )
        for r in ds.records
    ]
    return DetectionDataset(records, [ds.class_names[k] for k in order], [ds.category_ids[k] for k in order])


def _coco_case(tmp_path):
    path = tmp_path / "instances.json"
    data = _coco_file(path)
    results = _coco_detections(data)
    ds = read_coco(path, check_images=False)
    assert ds.category_ids == [3, 8, 17, 40]  # read_coco sorts the ids
    return path, data, results, ds


def _assert_stats_equal(ours, stats):
    for name, index in COCO_METRICS.items():
        expected = float("nan") if stats[index] == -1 else stats[index]
        assert ours[name] == pytest.approx(expected, abs=1e-12, nan_ok=True), name


def test_coco_per_class_ap_is_attached_to_its_category_whatever_the_label_order(tmp_path):
    path, data, results, ds = _coco_case(tmp_path)
    stats, expected = _pycocotools(path, results)
    name_of = dict(CATEGORIES)
    assert len({round(v, 6) for v in expected.values()}) == 4  # distinct APs: a mix-up cannot go unnoticed
    image_ids = [i["id"] for i in data["images"]]
    for order in ([0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0]):  # ids [3, 8, 17, 40], [17, 3, 40, 8], [40, 17, 8, 3]
        shuffled = _shuffled_labels(ds, order)
        ours = coco_ap(shuffled, _predictions(shuffled, results, image_ids))
        _assert_stats_equal(ours, stats)
        assert ours["per_class"] == pytest.approx({name_of[c]: ap for c, ap in expected.items()}, abs=1e-12)
        flat = evaluate(shuffled, _predictions(shuffled, results, image_ids), metrics="coco")
        assert {n: flat[f"coco/{n}/AP"] for n in name_of.values()} == ours["per_class"]


def test_coco_size_buckets_use_the_annotated_area_as_pycocotools_does(tmp_path):
    path, data, results, ds = _coco_case(tmp_path)
    boxes = np.array([a["bbox"] for a in data["annotations"]], float)
    areas = np.array([a["area"] for a in data["annotations"]])
    edges = [0, 32**2, 96**2, np.inf]
    assert (np.digitize(boxes[:, 2] * boxes[:, 3], edges) != np.digitize(areas, edges)).sum() >= 5
    np.testing.assert_array_equal(np.concatenate([r.area for r in ds]), areas)

    stats, _ = _pycocotools(path, results)
    predictions = _predictions(ds, results, [i["id"] for i in data["images"]])
    ours = coco_ap(ds, predictions)
    _assert_stats_equal(ours, stats)  # all 12, to float precision
    # With the box area instead (the file's area dropped), the size buckets move: the test can tell them apart.
    unknown = [
        ImageRecord(r.image_id, r.file_name, r.width, r.height, r.boxes, r.labels, iscrowd=r.iscrowd) for r in ds
    ]
    box_area = coco_ap(DetectionDataset(unknown, ds.class_names, ds.category_ids), predictions)
    assert box_area["AP"] == ours["AP"] and box_area["AP50"] == ours["AP50"]
    assert any(abs(box_area[k] - ours[k]) > 1e-3 for k in ("APs", "APm", "APl", "ARs", "ARm", "ARl"))


def test_coco_without_predictions_uses_the_annotated_area_too():
    # One GT whose box is large (100 x 100) but whose annotated area is small: APs is 0 (a GT to miss), APl NaN.
    record = ImageRecord("0", "0.jpg", 200, 200, [[0, 0, 100, 100]], [1], area=[500.0])
    result = coco_ap(DetectionDataset([record], ["a"]), [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}])
    assert result["APs"] == 0.0 and math.isnan(result["APl"]) and math.isnan(result["APm"])


def test_coco_area_round_trips_through_write_and_read(tmp_path):
    path, _, _, ds = _coco_case(tmp_path)
    back = read_coco(write_coco(ds, tmp_path / "again.json"), check_images=False)
    np.testing.assert_array_equal(np.concatenate([r.area for r in back]), np.concatenate([r.area for r in ds]))
    np.testing.assert_array_equal(back[3].subset([0]).area, ds[3].area[:1])


def test_coco_file_without_area_gets_nan_and_a_bad_area_is_reported(tmp_path):
    path = tmp_path / "a.json"
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 50, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    path.write_text(json.dumps(data))
    assert math.isnan(read_coco(path, check_images=False)[0].area[0])
    data["annotations"][0]["area"] = -3
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError,
        match=r"annotations\[0\]\.area: expected a number >= 0 \(square pixels\); "
        r"found -3",
    ):
        read_coco(path, check_images=False)
    with pytest.raises(ValueError, match=r"area must have one finite value >= 0 \(or NaN: unknown\) per box \(1\)"):
        ImageRecord("0", "0.jpg", 50, 50, [[0, 0, 10, 10]], [1], area=[1.0, 2.0])


# ------------------------------------------------------------------------------------------------------- VOC

VOC_NAMES = ("cat", "dog", "bird")


def _voc_files(root, seed, num_images=50):
    """A VOC2007-style test set on disk: integer 1-based boxes, ~20 % difficult, some images without objects."""
    rng = np.random.default_rng(seed)
    main = root / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "VOC2007" / "Annotations").mkdir()
    stems = [f"{i:06d}" for i in range(num_images)]
    for i, stem in enumerate(stems):
        xml = ET.Element("annotation")
        ET.SubElement(xml, "filename").text = f"{stem}.jpg"
        size = ET.SubElement(xml, "size")
        for key, value in (("width", "120"), ("height", "100"), ("depth", "3")):
            ET.SubElement(size, key).text = value
        for _ in range(int(rng.integers(0, 6)) if i % 6 else 0):
            obj = ET.SubElement(xml, "object")
            ET.SubElement(obj, "name").text = VOC_NAMES[int(rng.integers(0, 3))]
            ET.SubElement(obj, "difficult").text = str(int(rng.random() < 0.2))
            w, h = int(rng.integers(4, 60)), int(rng.integers(4, 60))
            xmin, ymin = int(rng.integers(1, 121 - w)), int(rng.integers(1, 101 - h))
            box = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmin + w - 1, ymin + h - 1)):
                ET.SubElement(box, key).text = str(value)
        ET.ElementTree(xml).write(root / "VOC2007" / "Annotations" / f"{stem}.xml")
    (main / "test.txt").write_text("".join(f"{s}\n" for s in stems))
    return stems


def _voc_detections(ds, seed):
    """Per record, detections in the records' (continuous) frame: jittered GTs, GT halves (IoU exactly 0.5 with the
    GT: the strict and the non-strict threshold disagree), whole-pixel and random boxes; every 7th image none."""
    rng = np.random.default_rng(seed)
    out = []
    for i, r in enumerate(ds):
        boxes, labels = [], []
        for box, label in zip(r.boxes.astype(float), r.labels):
            for _ in range(int(rng.integers(0, 3))):
                boxes.append(box + rng.normal(0, 3, 4))
                labels.append(label if rng.random() < 0.8 else int(rng.integers(1, 4)))
            if rng.random() < 0.3 and (box[2] - box[0]) % 2 == 0:
                boxes.append([box[0], box[1], (box[0] + box[2]) / 2, box[3]])
                labels.append(label)
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.integers(0, 80), rng.integers(0, 60)
            boxes.append([x, y, x + rng.integers(5, 40), y + rng.integers(5, 40)])
            labels.append(int(rng.integers(1, 4)))
        boxes = np.clip(np.array(boxes, float).reshape(-1, 4), 0, [120, 100, 120, 100])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        keep = slice(0, 0) if i % 7 == 3 else slice(None)
        scores, labels = rng.random(len(boxes)), np.array(labels, int)
        out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return out


def _parse_rec(path):
    """The objects of one annotation file, as the devkit reads them (integer 1-based pixel indices)."""
    objects = []
    for obj in ET.parse(path).findall("object"):
        box = obj.find("bndbox")
        objects.append(
            {
                "name": obj.find("name").text,
                "difficult": int(obj.find("difficult").text),
                "bbox": [int(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")],
            }
        )
    return objects


def _devkit_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _devkit_eval(recs, detections, classname, ovthresh=0.5):
    """One class's ``(ap_11pt, ap_area)`` by the devkit's loop. ``recs``: ``{image: objects}``; ``detections``:
    ``[(image, score, xmin, ymin, xmax, ymax)]`` in the devkit's 1-based frame (a results file)."""
    class_recs, npos = {}, 0
    for image, objects in recs.items():
        objs = [o for o in objects if o["name"] == classname]
        difficult = np.array([o["difficult"] for o in objs]).astype(bool)
        npos += int(np.sum(~difficult))
        class_recs[image] = {
            "bbox": np.array([o["bbox"] for o in objs], float).reshape(-1, 4),
            "difficult": difficult,
            "det": [False] * len(objs),
        }
    if npos == 0:
        return float("nan"), float("nan")
    image_ids = [d[0] for d in detections]
    confidence = np.array([d[1] for d in detections], float)
    BB = np.array([d[2:] for d in detections], float).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :]
        ovmax = -np.inf
        BBGT = R["bbox"]
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _devkit_ap(rec, prec, True), _devkit_ap(rec, prec, False)


def _voc_case(tmp_path, seed):
    stems = _voc_files(tmp_path, seed)
    ds = read_voc(tmp_path, sets=(("2007", "test"),), class_names=VOC_NAMES, check_images=False)
    preds = _voc_detections(ds, seed + 100)
    recs = {stem: _parse_rec(tmp_path / "VOC2007" / "Annotations" / f"{stem}.xml") for stem in stems}
    return ds, preds, stems, recs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_devkit_rules_match_the_devkit_loop_on_the_xml_files(tmp_path, seed):
    ds, preds, stems, recs = _voc_case(tmp_path, seed)
    assert sum(r.difficult.sum() for r in ds) > 5 and sum(r.num_boxes == 0 for r in ds) > 3
    assert sum(len(p["scores"]) == 0 for p in preds) > 3
    ours = voc_map(ds, preds, rules="devkit")
    for label, name in enumerate(VOC_NAMES, 1):
        # A results file: the records' frame back to VOC's 1-based indices (xmin = x1 + 1, xmax = x2).
        detections = [
            (stem, s, b[0] + 1, b[1] + 1, b[2], b[3])
            for stem, p in zip(stems, preds)
            for b, s, lab in zip(p["boxes"], p["scores"], p["labels"])
            if lab == label
        ]
        expected = _devkit_eval(recs, detections, name)
        got = ours["per_class"][name]
        assert 0.05 < expected[1] < 0.95  # a non-trivial mix of TPs, FPs, duplicates and difficult hits
        assert (got["ap_11pt"], got["ap_area"]) == pytest.approx(expected, abs=1e-6)
    # The continuous rules count IoU = 0.5 (the GT halves) as hits and use exact recall points: other numbers here.
    continuous = voc_map(ds, preds)
    assert continuous["mAP_area"] != pytest.approx(ours["mAP_area"], abs=1e-6)


def test_voc_devkit_threshold_is_strict_and_continuous_is_not():
    # GT VOC (1, 1, 10, 10) is record (0, 0, 10, 10); the detection covers its left half: IoU 50 / 100 = 0.5 exactly.
    ds = DetectionDataset([ImageRecord("0", "0.jpg", 20, 20, [[0, 0, 10, 10]], [1])], ["a"])
    half = [{"boxes": [[0.0, 0.0, 5.0, 10.0]], "scores": [0.9], "labels": [1]}]
    assert voc_map(ds, half, rules="devkit")["mAP_area"] == 0.0
    assert voc_map(ds, half, rules="continuous")["mAP_area"] == 1.0


def test_voc_devkit_recall_points_are_nparange_ones():
    # 10 GTs, 3 found first: recall 0.3 exactly. Exact points count 0.3 as reached; np.arange's 0.30000000000000004
    # is not, so the devkit's 11-point AP is 3/11 (t = 0, 0.1, 0.2) instead of 4/11.
    boxes = [[10.0 * k, 0, 10.0 * k + 8, 8] for k in range(10)]
    ds = DetectionDataset([ImageRecord("0", "0.jpg", 100, 10, boxes, [1] * 10)], ["a"])
    found = [{"boxes": boxes[:3], "scores": [0.9, 0.8, 0.7], "labels": [1] * 3}]
    assert voc_map(ds, found, rules="devkit")["mAP_11pt"] == pytest.approx(3 / 11)
    assert voc_map(ds, found, rules="continuous")["mAP_11pt"] == pytest.approx(4 / 11)


def test_voc_rules_option_is_checked_and_reported():
    ds = DetectionDataset([ImageRecord("0", "0.jpg", 20, 20, [[0, 0, 10, 10]], [1])], ["a"])
    preds = [{"boxes": [[0.0, 0.0, 10.0, 10.0]], "scores": [0.9], "labels": [1]}]
    assert voc_map(ds, preds, rules="devkit")["rules"] == "devkit"
    assert evaluate(ds, preds, metrics="voc", options={"voc": {"rules": "devkit"}})["voc/mAP_area"] == 1.0
    with pytest.raises(ValueError, match=r"'rules' parameter must be one of \['devkit', 'continuous'\]. Got 'vod'"):
        voc_map(ds, preds, rules="vod")
    with pytest.raises(
        ValueError,
        match=r"unknown options \['rule'\] for metric 'voc'; it takes \['iou_threshold', "
        r"'rules'\]",
    ):
        evaluate(ds, preds, metrics="voc", options={"voc": {"rule": "devkit"}})


# ------------------------------------------------------------------------------------------------------ FROC


def _box(*xyxy):
    return np.array(xyxy, float)


def test_froc_centre_matching_hits_on_the_centre_not_the_overlap():
    # GT (0, 0, 40, 40). A: a small box at the GT's centre (IoU 0.0625, centre inside). B: a box mostly on the GT
    # (IoU 0.6) whose centre (21, 20) is inside too. C: a box that overlaps the GT's corner (centre (45, 45) outside).
    ds = DetectionDataset([ImageRecord("0", "0.jpg", 100, 100, [[0, 0, 40, 40]], [1])], ["a"])
    for boxes, iou_hit, centre_hit in (
        ([[15, 15, 25, 25]], False, True),
        ([[2, 0, 40, 40]], True, True),
        ([[30, 30, 60, 60]], False, False),
    ):
        preds = [{"boxes": boxes, "scores": [0.9], "labels": [1]}]
        assert froc(ds, preds, fps_per_image=[1])["sensitivity"] == [float(iou_hit)]
        centre = froc(ds, preds, fps_per_image=[1], matching="centre")
        assert centre["sensitivity"] == [float(centre_hit)] and centre["matching"] == "centre"
        assert centre["iou_threshold"] is None
    on_edge = [{"boxes": [[30, 0, 50, 40]], "scores": [0.9], "labels": [1]}]  # centre (40, 20): on the edge
    assert froc(ds, on_edge, fps_per_image=[1], matching="centre")["sensitivity"] == [0.0]


def _reference_curve(ds, preds, hit, duplicates_as_fp):
    """(FP/img, sensitivity) at every distinct score, from scratch for each threshold, with the hit rule ``hit``."""
    dets = sorted(
        ((s, i, b) for i, p in enumerate(preds) for b, s in zip(p["boxes"], p["scores"])), key=lambda t: -t[0]
    )
    counted = sum(int((~(r.difficult | r.iscrowd)).sum()) for r in ds)
    points = []
    for threshold in sorted({s for s, _, _ in dets}, reverse=True):
        found, fp = set(), 0
        for _, i, box in (d for d in dets if d[0] >= threshold):
            r = ds[i]
            hits = [j for j in range(r.num_boxes) if hit(box, r.boxes[j])]
            real = {(i, j) for j in hits if not (r.difficult[j] or r.iscrowd[j])}
            fp += not hits or (duplicates_as_fp and bool(real) and real <= found)
            found |= real
        points.append((fp / len(ds), len(found) / counted))
    return np.array(points)


def _iou_hit(a, b):
    iw, ih = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih) >= 0.5


def _centre_hit(a, b):
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] < cx < b[2] and b[1] < cy < b[3]


@pytest.mark.parametrize("matching, hit", [("iou", _iou_hit), ("centre", _centre_hit)])
@pytest.mark.parametrize("duplicates_as_fp", [False, True])
def test_froc_both_matchings_match_brute_force(tmp_path, matching, hit, duplicates_as_fp):
    ds, preds, _, _ = _voc_case(tmp_path, seed=5)
    result = froc(ds, preds, matching=matching, duplicates_as_fp=duplicates_as_fp)
    expected = _reference_curve(ds, preds, hit, duplicates_as_fp)
    np.testing.assert_allclose(result["curve"]["fps_per_image"][1:], expected[:, 0])
    np.testing.assert_allclose(result["curve"]["sensitivity"][1:], expected[:, 1])
    assert 0.3 < result["cpm"] < 1.0


def test_froc_matching_options_are_checked():
    ds = DetectionDataset([ImageRecord("0", "0.jpg", 100, 100, [[0, 0, 40, 40]], [1])], ["a"])
    preds = [{"boxes": [[0, 0, 40, 40]], "scores": [0.9], "labels": [1]}]
    with pytest.raises(ValueError, match=r"'matching' parameter must be one of \['iou', 'centre'\]. Got 'center'"):
        froc(ds, preds, matching="center")
    with pytest.raises(ValueError, match=r"'iou_threshold' parameter applies to matching 'iou' only. Got 0.3"):
        froc(ds, preds, matching="centre", iou_threshold=0.3)
    assert froc(ds, preds, iou_threshold=0.7)["iou_threshold"] == 0.7
    assert evaluate(ds, preds, metrics="froc", options={"froc": {"matching": "centre"}})["froc/cpm"] == 1.0


# ---------------------------------------------------------------------------------------------------- config


def test_config_voc_rules_default_to_the_devkit_for_voc_data_only():
    from activedet.config import ConfigError, config_from_dict

    def options(**keys):
        return config_from_dict({"train_data": "x", **keys}).evaluation_options()

    assert options(data_format="voc") == {"voc": {"rules": "devkit"}}
    assert options(data_format="coco") == {"voc": {"rules": "continuous"}}
    assert options(data_format="voc", metric_options={"voc": {"rules": "continuous", "iou_threshold": 0.7}}) == {
        "voc": {"rules": "continuous", "iou_threshold": 0.7}
    }
    assert options(data_format="voc", metrics=["coco", "froc"], metric_options={"froc": {"matching": "centre"}}) == {
        "froc": {"matching": "centre"}
    }
    with pytest.raises(
        ConfigError,
        match=r"key 'metric_options': The 'matching' parameter must be one of "
        r"\['iou', 'centre'\]. Got 'center'",
    ):
        options(metrics=["froc"], metric_options={"froc": {"matching": "center"}})
    with pytest.raises(
        ConfigError,
        match=r"key 'metric_options': .* keys \['froc'\] that are not among the "
        r"requested metrics \['voc', 'coco'\]",
    ):
        options(metric_options={"froc": {}})


def test_evaluation_and_the_loop_get_the_resolved_options(tiny_data, tmp_path, monkeypatch):
    import activedet.workflows as workflows
    from activedet.al.loop import ActiveLearningRun
    from activedet.config import config_from_dict
    from activedet.data.synth import SYNTH_CLASSES

    cfg = config_from_dict(
        {
            "data_format": "voc",
            "train_data": str(tiny_data / "voc"),
            "test_data": str(tiny_data / "voc"),
            "voc_train_sets": ["2007/train"],
            "voc_test_sets": ["2007/test"],
            "class_names": list(SYNTH_CLASSES),
            "detector": "fcos",
            "backbone": "tiny",
            "min_size": 64,
            "max_size": 64,
            "metrics": ["voc"],
            "device": "cpu",
            "out_dir": str(tmp_path / "out"),
            "cycles": 1,
        }
    )
    seen = []
    monkeypatch.setattr(workflows, "evaluate", lambda *a, **k: seen.append(k["options"]) or evaluate(*a, **k))
    model = workflows.build_model(cfg, 10)
    assert "voc/mAP_area" in workflows.evaluate_from_config(cfg, model, progress=False)
    monkeypatch.setattr(ActiveLearningRun, "run", lambda run: seen.append(run.metric_options))
    workflows.run_from_config(cfg, progress=False)
    assert seen == [{"voc": {"rules": "devkit"}}] * 2
