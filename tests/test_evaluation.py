"""Tests of activedet.evaluation on hand-built cases whose answers are worked out in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from activedet.data.records import DetectionDataset, ImageRecord
from activedet.evaluation import coco_ap, evaluate, froc, voc_map
from activedet.models.outputs import Detections

A, B, C, D = (10, 10, 50, 50), (60, 10, 90, 40), (10, 60, 40, 90), (55, 55, 95, 95)  # disjoint boxes
FAR = (0, 0, 5, 5)  # overlaps none of A..D


def record(index, boxes=(), labels=None, difficult=None, iscrowd=None, size=100):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    labels = np.ones(len(boxes), np.int64) if labels is None else labels
    return ImageRecord(str(index), f"/data/{index}.jpg", size, size, boxes, labels, difficult, iscrowd)


def pred(boxes=(), scores=(), labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.ones(len(boxes), dtype=torch.int64) if labels is None else torch.tensor(labels)
    return {"boxes": boxes, "scores": torch.tensor(scores, dtype=torch.float32).reshape(-1), "labels": labels}


def dataset(*records, names=("a",), category_ids=None):
    return DetectionDataset(list(records), list(names), category_ids)


def aps(result, name="a"):
    return result["per_class"][name]["ap_11pt"], result["per_class"][name]["ap_area"]


# ------------------------------------------------------------------------------------------------------- VOC


@pytest.mark.parametrize("kind", ["detections", "torch", "numpy"])
def test_voc_perfect_predictions_give_ap_1(kind):
    ds = dataset(record(0, [A, B], [1, 2]), record(1, [C], [2]), record(2), names=("a", "b"))
    preds = [pred([A, B], [0.9, 0.8], [1, 2]), pred([C], [0.7], [2]), pred()]
    if kind == "detections":
        preds = [Detections(p["boxes"], p["scores"], p["labels"]) for p in preds]
    elif kind == "numpy":
        preds = [{k: v.numpy() for k, v in p.items()} for p in preds]
    result = voc_map(ds, preds)
    assert result["mAP_11pt"] == 1.0 and result["mAP_area"] == 1.0
    assert result["per_class"]["b"] == {"ap_11pt": 1.0, "ap_area": 1.0, "num_gt": 2, "num_det": 2}


def test_voc_known_curve_differs_between_11pt_and_area():
    # 4 GTs in 4 images; ranked detections: TP, FP, TP, FP.
    # precision 1, 1/2, 2/3, 1/2 at recall 1/4, 1/4, 1/2, 1/2; envelope 1, 2/3, 2/3, 1/2.
    # area = 1/4 * 1 + 1/4 * 2/3 = 5/12; 11-point: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t >= .6 -> 0: 5/11.
    ds = dataset(record(0, [A]), record(1, [B]), record(2, [C]), record(3, [D]))
    preds = [pred([A], [0.9]), pred([FAR], [0.8]), pred([C], [0.7]), pred([FAR], [0.6])]
    assert aps(voc_map(ds, preds)) == pytest.approx((5 / 11, 5 / 12))


def test_voc_false_positive_on_empty_image_lowers_precision():
    # Ranked: FP (empty image, 0.95), TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1: envelope 2/3 everywhere,
    # so both APs are 2/3. Scored below the TPs, the same FP costs nothing.
    ds = dataset(record(0, [A, B]), record(1))
    high = voc_map(ds, [pred([A, B], [0.9, 0.8]), pred([C], [0.95])])
    low = voc_map(ds, [pred([A, B], [0.9, 0.8]), pred([C], [0.5])])
    assert aps(high) == pytest.approx((2 / 3, 2 / 3))
    assert aps(low) == (1.0, 1.0)


def test_voc_image_without_detections_limits_recall():
    # One of 2 GTs found: precision 1 up to recall 1/2. area = 1/2; 11-point: t = 0..0.5 (6 points) -> 6/11.
    ds = dataset(record(0, [A]), record(1, [B]))
    assert aps(voc_map(ds, [pred([A], [0.9]), pred()])) == pytest.approx((6 / 11, 1 / 2))


def test_voc_duplicate_detections_are_false_positives():
    # Ranked: TP (A), FP (A again), TP (B): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # area = 1/2 * 1 + 1/2 * 2/3 = 5/6; 11-point = (6 * 1 + 5 * 2/3) / 11 = 28/33.
    ds = dataset(record(0, [A]), record(1, [B]))
    preds = [pred([A, (11, 11, 50, 50)], [0.9, 0.8]), pred([B], [0.7])]
    assert aps(voc_map(ds, preds)) == pytest.approx((28 / 33, 5 / 6))


def test_voc_detection_on_difficult_object_is_neither_tp_nor_fp():
    # The 0.95 detection hits the difficult B: ignored, so the ranking is just TP (A) -> AP 1, num_gt 1.
    # Had it hit nothing it would be an FP ranked first: precision 0, 1/2 at recall 0, 1 -> area AP 1/2.
    ds = dataset(record(0, [A, B], difficult=[False, True]))
    on_difficult = voc_map(ds, [pred([B, A], [0.95, 0.9])])
    on_nothing = voc_map(ds, [pred([C, A], [0.95, 0.9])])
    assert aps(on_difficult) == (1.0, 1.0)
    assert on_difficult["per_class"]["a"]["num_gt"] == 1
    assert aps(on_nothing)[1] == pytest.approx(0.5)


def test_voc_class_without_ground_truth_is_nan_and_excluded():
    # Class "b" has only a difficult GT and a false positive; class "c" has nothing. mAP = AP of "a" = 1.
    ds = dataset(record(0, [A, B], [1, 2], difficult=[False, True]), names=("a", "b", "c"))
    result = voc_map(ds, [pred([A, C], [0.9, 0.8], [1, 2])])
    assert result["mAP_11pt"] == 1.0 and result["mAP_area"] == 1.0
    assert result["num_classes_evaluated"] == 1
    assert all(math.isnan(v) for v in aps(result, "b") + aps(result, "c"))
    assert result["per_class"]["b"]["num_gt"] == 0 and result["per_class"]["b"]["num_det"] == 1


def test_voc_detection_whose_max_iou_gt_is_taken_is_a_false_positive():
    # G1 = (0,0,10,10), G2 = (0,2,10,12). The 0.9 detection is G1 (TP). The 0.8 one, (0,.5,10,10.5), has IoU 95/105
    # with G1 and 85/115 (>= .5) with G2, but its max-IoU GT is the taken G1: FP (devkit rule). TP, FP at recall 1/2.
    ds = dataset(record(0, [(0, 0, 10, 10), (0, 2, 10, 12)]))
    result = voc_map(ds, [pred([(0, 0, 10, 10), (0, 0.5, 10, 10.5)], [0.9, 0.8])])
    assert aps(result) == pytest.approx((6 / 11, 1 / 2))


def test_voc_iou_exactly_at_threshold_matches():
    # IoU((0,0,10,10), (0,0,10,20)) = 100 / 200 = 0.5 exactly (no +1): a TP. A slightly taller box falls below.
    ds = dataset(record(0, [(0, 0, 10, 10)]))
    assert voc_map(ds, [pred([(0, 0, 10, 20)], [0.9])])["mAP_area"] == 1.0
    assert voc_map(ds, [pred([(0, 0, 10, 20.5)], [0.9])])["mAP_area"] == 0.0


def _reference_voc(records, preds, num_classes, iou_threshold=0.5):
    """Per-class (ap_11pt, ap_area) by the devkit's detection-by-detection loop under the continuous rules (no + 1,
    IoU >= threshold, exact recall points; crowd ignored like difficult)."""

    def iou(box, boxes):
        iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
        ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return iw * ih / ((box[2] - box[0]) * (box[3] - box[1]) + area - iw * ih)

    result = []
    for c in range(1, num_classes + 1):
        gt = [(r.boxes[r.labels == c].astype(float), (r.difficult | r.iscrowd)[r.labels == c]) for r in records]
        used = [np.zeros(len(g), bool) for g, _ in gt]
        npos = sum(int((~d).sum()) for _, d in gt)
        dets = sorted(
            (
                (s, i, b)
                for i, p in enumerate(preds)
                for b, s, lab in zip(p["boxes"], p["scores"], p["labels"])
                if lab == c
            ),
            key=lambda t: -t[0],
        )
        tp = []
        for _, i, box in dets:
            boxes, difficult = gt[i]
            overlaps = iou(box, boxes) if len(boxes) else np.zeros(0)
            j = int(np.argmax(overlaps)) if len(boxes) else -1
            if j >= 0 and overlaps[j] >= iou_threshold:
                if difficult[j]:
                    continue
                tp.append(not used[i][j])
                used[i][j] = True
            else:
                tp.append(False)
        tps = np.cumsum(tp)
        rec, prec = tps / npos, tps / np.arange(1, len(tp) + 1)
        ap11 = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(11) / 10])
        mrec, mpre = np.concatenate(([0], rec, [1])), np.concatenate(([0], prec, [0]))
        for k in range(len(mpre) - 2, -1, -1):
            mpre[k] = max(mpre[k], mpre[k + 1])
        k = np.where(mrec[1:] != mrec[:-1])[0]
        result.append((ap11, np.sum((mrec[k + 1] - mrec[k]) * mpre[k + 1])))
    return result


def _random_case(seed, num_images=60):
    """Overlapping grid boxes, 3 classes, 20 % difficult; detections mostly near a GT, often with its label."""
    rng = np.random.default_rng(seed)
    grid = np.array([(x, y, x + w, y + w) for x in (0, 20, 40) for y in (0, 30) for w in (30, 40)], np.float32)
    records, preds = [], []
    for i in range(num_images):
        n = int(rng.integers(0, 5))
        labels = rng.integers(1, 4, n)
        records.append(
            record(
                i,
                grid[rng.choice(len(grid), n, replace=False)],
                labels,
                difficult=rng.random(n) < 0.2,
                iscrowd=rng.random(n) < 0.1,
            )
        )
        m = int(rng.integers(0, 8))
        source = rng.integers(0, max(n, 1), m)
        near_gt = (rng.random(m) < 0.7) & (n > 0)
        boxes = np.where(
            near_gt[:, None], records[-1].boxes[source % max(n, 1)] if n else 0, grid[rng.integers(0, len(grid), m)]
        ) + rng.normal(0, 3, (m, 4)).clip(-2, 2)
        keep_label = (rng.random(m) < 0.7) & near_gt
        preds.append(
            {
                "boxes": boxes,
                "scores": rng.random(m).round(2),  # rounding makes ties
                "labels": np.where(keep_label, labels[source % max(n, 1)] if n else 1, rng.integers(1, 4, m)),
            }
        )
    return dataset(*records, names=("a", "b", "c")), preds


def test_voc_continuous_rules_match_a_reference_loop_on_random_data():
    for seed in range(3):
        ds, preds = _random_case(seed)
        result = voc_map(ds, preds)
        assert 0.1 < result["mAP_area"] < 0.9  # a non-trivial mix of TPs, FPs, duplicates and ignored detections
        for name, (ap11, ap_area) in zip("abc", _reference_voc(ds.records, preds, 3)):
            assert aps(result, name) == pytest.approx((ap11, ap_area), abs=1e-12)


# ------------------------------------------------------------------------------------------------------ COCO

SMALL, MEDIUM, LARGE = (10, 10, 30, 30), (50, 10, 100, 60), (10, 70, 150, 190)  # areas 400, 2500, 16800


def _coco_case():
    # Labels 1 and 2 stand for COCO categories 3 and 17; every class has boxes in every area range.
    records = [
        record(0, [SMALL, MEDIUM, LARGE], [1, 2, 1], size=200),
        record(1, [LARGE, SMALL], [2, 2], size=200),
        record(2, [MEDIUM], [1], size=200),
        record(3, size=200),
    ]
    return DetectionDataset(records, ["car", "dog"], category_ids=[3, 17])


def test_coco_non_contiguous_category_ids_perfect_and_swapped():
    ds = _coco_case()
    perfect = [pred(r.boxes, np.linspace(0.9, 0.5, r.num_boxes), r.labels) for r in ds]
    swapped = [pred(r.boxes, np.linspace(0.9, 0.5, r.num_boxes), 3 - r.labels) for r in ds]
    good, bad = coco_ap(ds, perfect), coco_ap(ds, swapped)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert good[key] == pytest.approx(1.0) and bad[key] == pytest.approx(0.0), key
    assert good["per_class"] == pytest.approx({"car": 1.0, "dog": 1.0})


def test_coco_area_range_without_ground_truth_is_nan():
    ds = dataset(record(0, [LARGE], size=200))
    result = coco_ap(ds, [pred([LARGE], [0.9])])
    assert result["AP"] == pytest.approx(1.0) and result["APl"] == pytest.approx(1.0)
    assert math.isnan(result["APs"]) and math.isnan(result["APm"]) and math.isnan(result["ARs"])


def test_coco_empty_predictions_give_zeros_not_an_error():
    ds = dataset(record(0, [LARGE], size=200), record(1, size=200), names=("a", "b"))
    result = coco_ap(ds, [pred(), pred()])
    assert result["AP"] == 0.0 and result["AR100"] == 0.0 and result["APl"] == 0.0
    assert math.isnan(result["APs"]) and math.isnan(result["APm"])
    assert result["per_class"]["a"] == 0.0 and math.isnan(result["per_class"]["b"])


def test_coco_crowd_box_is_an_ignore_region():
    # A high-scored detection on the crowd box C is neither TP nor FP: AP stays 1.
    ds = dataset(record(0, [A, C], iscrowd=[False, True]))
    assert coco_ap(ds, [pred([C, A], [0.99, 0.9])])["AP"] == pytest.approx(1.0)
    assert coco_ap(ds, [pred([D, A], [0.99, 0.9])])["AP"] < 0.9  # the same detection elsewhere is an FP


def test_coco_is_silent_unless_verbose(capsys):
    ds = dataset(record(0, [A]))
    coco_ap(ds, [pred([A], [0.9])])
    assert capsys.readouterr().out == ""
    coco_ap(ds, [pred([A], [0.9])], verbose=True)
    assert "Average Precision" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------ FROC


def _froc_case():
    # 4 images, 4 counted GTs (a, b | c | d, difficult e | none). Detections, by score:
    #   .95 a (detects a)  .90 FP (img 3)  .85 a again (duplicate)  .80 c  .70 e (difficult: ignored)
    #   .60 FP (img 0)     .50 FP (img 1)  .40 d                    .30 FP (img 2); b is never found.
    e = (60, 60, 90, 90)
    ds = dataset(record(0, [A, B]), record(1, [C]), record(2, [D, (5, 5, 30, 30)], difficult=[False, True]), record(3))
    preds = [
        pred([A, A, FAR], [0.95, 0.85, 0.6]),
        pred([C, FAR], [0.8, 0.5]),
        pred([(5, 5, 30, 30), D, e], [0.7, 0.4, 0.3]),
        pred([FAR], [0.9]),
    ]
    return ds, preds


def test_froc_constructed_case():
    # Operating points (FP/img, sensitivity): .95 -> (0, 1/4); .90 -> (1/4, 1/4); .80 -> (1/4, 2/4);
    # .60 -> (2/4, 2/4); .50 -> (3/4, 2/4); .40 -> (3/4, 3/4); .30 -> (1, 3/4).
    # Max sensitivity with FP/img <= 1/8, 1/4, 1/2, 1, 2, 4, 8: 1/4, 1/2, 1/2, 3/4, 3/4, 3/4, 3/4.
    result = froc(*_froc_case())
    assert result["sensitivity"] == pytest.approx([0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75])
    assert result["cpm"] == pytest.approx(4.25 / 7)
    assert result["num_gt"] == 4 and result["num_images"] == 4


def test_froc_strict_variant_counts_duplicates_as_false_positives():
    # The .85 duplicate on a becomes an FP: .85 -> (2/4, 1/4), .80 -> (2/4, 2/4), .60 -> (3/4, 2/4), ...
    # Readings: 1/4, 1/4, 1/2, 3/4, 3/4, 3/4, 3/4.
    result = froc(*_froc_case(), duplicates_as_fp=True)
    assert result["sensitivity"] == pytest.approx([0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75])
    assert result["cpm"] == pytest.approx(4 / 7)


def test_froc_class_aware_option():
    # The only detection has the wrong label: class-agnostic it finds the GT, class-aware it is an FP (1 FP/img).
    ds, preds = dataset(record(0, [A], [1]), names=("a", "b")), [pred([A], [0.9], [2])]
    assert froc(ds, preds, fps_per_image=[0.5])["sensitivity"] == [1.0]
    aware = froc(ds, preds, fps_per_image=[0.5, 1.0], class_aware=True)
    assert aware["sensitivity"] == [0.0, 0.0] and aware["curve"]["fps_per_image"][-1] == 1.0


# The FROC curve against a brute-force reference (both matchings): tests/test_evaluation_reference.py


def test_froc_without_ground_truth_is_nan():
    result = froc(dataset(record(0)), [pred([A], [0.9])])
    assert result["num_gt"] == 0 and math.isnan(result["cpm"])


# ------------------------------------------------------------------------------------------- evaluate + errors


def test_evaluate_returns_flat_json_able_dict():
    ds = _coco_case()
    preds = [pred(r.boxes, np.linspace(0.9, 0.5, r.num_boxes), r.labels) for r in ds]
    flat = evaluate(ds, preds, metrics=("voc", "coco", "froc"), options={"froc": {"fps_per_image": [0.5, 1]}})
    assert flat["voc/mAP_11pt"] == 1.0 and flat["voc/dog/num_gt"] == 3
    assert flat["coco/AP"] == pytest.approx(1.0) and flat["coco/car/AP"] == pytest.approx(1.0)
    assert flat["froc/sensitivity@0.5"] == 1.0 and flat["froc/cpm"] == 1.0
    assert json.loads(json.dumps(flat)) == pytest.approx(flat)
    assert set(evaluate(ds, preds, metrics="voc")) == {k for k in flat if k.startswith("voc/")}


def _bad(**override):
    p = pred([A], [0.9])
    p.update(override)
    return p


@pytest.mark.parametrize(
    "predictions, match",
    [
        ([pred()], r"one entry per dataset image \(2\).*Got 1"),
        ([pred(), _bad(labels=torch.tensor([0]))], r"predictions\[1\]\['labels'\] must be in 1\.\.2\. Got 0"),
        ([pred(), _bad(labels=torch.tensor([3]))], r"must be in 1\.\.2\. Got 3"),
        (
            [_bad(boxes=torch.zeros(1, 3)), pred()],
            r"predictions\[0\]\['boxes'\] must have shape \[N, 4\]. Got \[1, 3\]",
        ),
        ([_bad(scores=torch.ones(2)), pred()], r"\['scores'\] must have shape \[1\].*Got \[2\]"),
        ([{"boxes": torch.zeros(0, 4)}, pred()], r"predictions\[0\] must have keys.*Missing \['scores', 'labels'\]"),
        ([pred(), 5], r"predictions\[1\] must be a Detections or a mapping.*Got int"),
        ([_bad(boxes=torch.tensor([[50.0, 10, 10, 50]])), pred()], r"x1 <= x2.*Got \[50\.0"),
        ([_bad(scores=torch.tensor([float("nan")])), pred()], r"\['scores'\] must be finite"),
    ],
)
def test_bad_predictions_raise_value_error(predictions, match):
    ds = dataset(record(0, [A]), record(1), names=("a", "b"))
    for metric in (voc_map, coco_ap, froc):
        with pytest.raises(ValueError, match=match):
            metric(ds, predictions)


def test_bad_parameters_raise_value_error():
    ds, preds = dataset(record(0, [A])), [pred([A], [0.9])]
    with pytest.raises(ValueError, match=r"'iou_threshold' parameter must be a float in \(0, 1\]. Got 0"):
        voc_map(ds, preds, iou_threshold=0)
    with pytest.raises(ValueError, match=r"'fps_per_image' parameter .* Got \[\]"):
        froc(ds, preds, fps_per_image=[])
    with pytest.raises(
        ValueError,
        match=r"'metrics' parameter .*\['voc', 'coco', 'froc', 'accuracy'\]. "
        r"Got \('map',\)",
    ):
        evaluate(ds, preds, metrics=("map",))
    with pytest.raises(ValueError, match=r"'options' parameter .* \['froc'\]"):
        evaluate(ds, preds, options={"froc": {}})
    with pytest.raises(ValueError, match=r"'class_names' parameter is required"):
        voc_map(list(ds), preds)
    with pytest.raises(ValueError, match=r"dataset\[0\].*label 3; ground-truth labels must be in 1\.\.1"):
        voc_map(dataset(record(0, [A], [3])), preds)
    assert voc_map(list(ds), preds, class_names=["a"])["mAP_area"] == 1.0
