"""The HTML report: its content on hand-made runs, and a real one-cycle run rendered by headless chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_loop import write_config

from activedet.cli import main
from activedet.config import load_config
from activedet.report.html import write_html_report
from activedet.workflows import run_from_config

HOSTILE = "<script>alert(1)</script>&"
ARTIFACTS = Path(os.environ.get("ACTIVEDET_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts")
GT_GREEN, PRED_ORANGE = (40, 200, 40), (255, 140, 0)


def make_run(root: Path, config: dict, values, picks_per_cycle: list[list[dict]]) -> Path:
    """RUN/config.json, RUN/metrics.jsonl (mAP and per-class AP "red", "a<b") and RUN/cycles/t/selection.json."""
    run = root / f"{config['strategy']}-{config['seed']}".replace("/", "_")
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    lines = [
        json.dumps(
            {
                "cycle": t,
                "labelled_images": 6 + 4 * t,
                "labelled_boxes": 10 + 7 * t,
                "metrics": {"voc/mAP_area": v, "voc/red/ap_area": v + 0.1, "voc/a<b/ap_area": None},
            }
        )
        for t, v in enumerate(values)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for t, picks in enumerate(picks_per_cycle):
        (run / "cycles" / str(t)).mkdir(parents=True)
        (run / "cycles" / str(t) / "selection.json").write_text(json.dumps({"cycle": t, "picks": picks}))
    return run


def colour_pixels(path: Path, colour) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).sum(axis=-1) < 30).sum())


def test_page_has_curves_per_class_table_thumbnails_and_placeholders(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    config = load_config(write_config(tmp_path / "cfg", data, strategy="entropy", seed=0)).to_dict()
    images = json.loads(Path(config["train_data"]).read_text())["images"]
    ids = [str(image["id"]) for image in images]
    missing = data / images[3]["file_name"]
    missing.unlink()  # a pick whose image file is gone: a placeholder, the page is still written
    picks = [
        {
            "index": i,
            "rank": rank,
            "cycle": 0,
            "strategy": "entropy",
            "score": score,
            "image_id": ids[i],
            "boxes": 1,
            "checkpoint": "abc",
        }
        for rank, (i, score) in enumerate([(5, 0.82), (3, 0.5), (7, 0.4), (9, 0.3), (11, None)])
    ]
    entropy = make_run(tmp_path / "runs", config, [0.2, 0.3], [picks])
    (entropy / "cycles" / "1").mkdir()
    (entropy / "cycles" / "1" / "selection.json").write_text("{not json")  # unreadable: a note
    (entropy / "cycles" / "0" / "predictions.json").write_text(
        json.dumps(
            {
                ids[5]: {"boxes": [[5, 5, 40, 40], [1, 1, 2, 2]], "scores": [0.9, 0.1], "labels": [1, 2]},
                ids[7]: {"boxes": [[1, 2, 3]], "scores": [0.9], "labels": [1]},  # malformed entries: a note
                ids[9]: {"boxes": [[40, 40, 5, 5]], "scores": [0.9], "labels": [1]},
            }
        )
    )
    make_run(tmp_path / "runs", {"strategy": HOSTILE, "seed": 0}, [0.25, 0.35], [[{"index": 0, "rank": 0}]])

    page_path = write_html_report(tmp_path / "runs", tmp_path / "report", thumbnails_per_cycle=4, thumb_size=96)
    page = page_path.read_text()

    assert page_path == tmp_path / "report" / "index.html"
    assert page.count("<svg") == 2 and page.count('class="curve"') == 4  # vs images and boxes, two strategies
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    assert '<th scope="row">red</th><td>0.4500</td><td>0.4000</td></tr>' in page  # last cycle + 0.1
    assert '<th scope="row">a&lt;b</th><td class="na">n/a</td>' in page
    figures = page.split('<figure class="thumb">')[1:]
    assert len(figures) == 1 + 4  # the hostile run's one pick ("<" sorts first); entropy: the first 4 of 5 by rank
    assert "image unavailable" in figures[0] and "pool images unavailable" in page  # config.json is not a config
    assert "rank 1, entropy score 0.82" in figures[1] and "rank 4, entropy score 0.3" in figures[4]
    assert "image unavailable" in figures[2] and missing.name in figures[2]  # the missing file, named
    assert "predictions of this image malformed" in figures[3] and "x1 &lt;= x2" in figures[4]
    assert "selection.json unreadable" in page and "Predicted boxes (orange) from predictions.json" in page
    thumbs = sorted((tmp_path / "report" / "thumbs").iterdir())
    assert [p.name for p in thumbs] == ["r001_c000_000.png", "r001_c000_002.png", "r001_c000_003.png"]
    assert page.count('<img src="thumbs/') == 3 and max(Image.open(thumbs[0]).size) == 96
    # pick 0: ground truth and the prediction scoring 0.9 drawn; the one scoring 0.1 is under min_score
    assert colour_pixels(thumbs[0], GT_GREEN) > 20 and colour_pixels(thumbs[0], PRED_ORANGE) > 20
    assert colour_pixels(thumbs[2], PRED_ORANGE) == 0


def test_cycles_cuts_curves_per_class_values_and_queried_images(tmp_path):
    """cycles=1 of a three-cycle run: the curve has two points, the per-class table shows cycle 1 (0.3 + 0.1), and
    only cycle 0's picks (those that made cycle 1's labelled set) are shown."""
    pick = lambda t: [{"index": 0, "rank": 0, "cycle": t, "strategy": "entropy", "score": 0.5}]
    make_run(tmp_path / "runs", {"strategy": "entropy", "seed": 0}, [0.2, 0.3, 0.5], [pick(0), pick(1)])
    page = write_html_report(tmp_path / "runs", tmp_path / "all").read_text()
    assert "<h4>cycle 1:" in page and '<th scope="row">red</th><td>0.6000</td>' in page
    page = write_html_report(tmp_path / "runs", tmp_path / "cut", cycles=1).read_text()
    assert "<h2>Per class, cycle 1</h2>" in page and "cycle 1, 10 images" in page
    assert '<th scope="row">red</th><td>0.4000</td>' in page
    assert "<h4>cycle 0:" in page and "<h4>cycle 1:" not in page
    curve = page.split('class="curve"')[1].split("/>")[0]
    assert curve.count("L") == 1  # two points: M x0 y0 L x1 y1


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="'thumbnails_per_cycle' parameter of write_html_report must be an int >= 0"):
        write_html_report(tmp_path, tmp_path / "out", thumbnails_per_cycle=-1)
    with pytest.raises(ValueError, match=r"'thumb_size' parameter .* must be an int in \[16, 2048\]. Got 8"):
        write_html_report(tmp_path, tmp_path / "out", thumb_size=8)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail(
        "chromium is not installed; this test renders the HTML report with headless chromium. On Debian/"
        "Ubuntu: `apt-get install -y --no-install-recommends chromium` (`make test` does it when run as "
        "root), then run the test again",
        pytrace=False,
    )


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"chromium exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def test_report_of_a_real_run_renders_in_headless_chromium(tiny_data, tmp_path):
    browser = find_chromium()
    run_from_config(load_config(write_config(tmp_path, tiny_data, strategy="entropy", cycles=1)), progress=False)
    run = tmp_path / "run"
    picks = json.loads((run / "cycles" / "0" / "selection.json").read_text())["picks"]
    # what the query command will write: the cycle model's boxes on its picks (here made up, one per image)
    (run / "cycles" / "0" / "predictions.json").write_text(
        json.dumps({p["image_id"]: {"boxes": [[4, 4, 60, 50]], "scores": [0.77], "labels": [1]} for p in picks})
    )
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out), "--html", "--baseline", "entropy"]) == 0
    assert {"report.md", "summary.json", "index.html", "thumbs"} <= {p.name for p in out.iterdir()}

    url = (out / "index.html").as_uri()
    dom = chromium(browser, tmp_path / "profile", "--dump-dom", url).stdout
    assert dom.count("<svg") == 2 and dom.count('<path class="curve" d="M') == 2
    assert dom.count('<img src="thumbs/') == len(picks) == 4 and "placeholder" not in dom.split("<body>")[1]
    assert "entropy score" in dom and '<table class="per-class">' in dom

    screenshot = tmp_path / "html_report.png"
    chromium(
        browser,
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
        "--force-device-scale-factor=1",
        url,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "html_report.png")
    shutil.copytree(out, ARTIFACTS / "html_report", dirs_exist_ok=True)
    image = np.asarray(Image.open(screenshot).convert("RGB"))
    assert image.shape[:2] == (2000, 1280) and image.std() > 10  # not a blank page
    assert colour_pixels(screenshot, GT_GREEN) > 50  # the thumbnails were loaded and drawn, boxes and all
