"""Run by tests/test_distributed.py, as one plain process or under torchrun: train the tiny RetinaNet on the toy
data and save the final weights (rank 0). Not a test module itself."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_toy_dataset  # noqa: E402

from activedet.engine import distributed as dist_utils  # noqa: E402
from activedet.engine.inference import predict_dataset  # noqa: E402
from activedet.engine.train import TrainOptions, train_detector  # noqa: E402
from activedet.models import build_detector  # noqa: E402


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    dist_utils.init_distributed(torch.device("cpu"))
    data = make_toy_dataset(out / "data" / f"rank{dist_utils.rank()}", n_images=8)
    torch.manual_seed(0)
    # group norm: batch statistics would differ between 1 process x 4 images and 2 processes x 2 images
    model = build_detector("retinanet", 2, backbone="tiny", norm="group", min_size=96, max_size=96)
    options = TrainOptions(
        epochs=2,
        batch_size=4,
        optimizer="sgd",
        lr=0.01,
        warmup_iters=2,
        lr_steps=[100],
        hflip_prob=0.5,
        amp=False,
        seed=0,
        log_every=1,
    )
    train_detector(model, data, val_set=data, options=options, out_dir=out / "run", device="cpu", progress=False)
    predictions = predict_dataset(model, data, device="cpu", batch_size=3)
    if dist_utils.is_main_process():
        torch.save({"model": model.state_dict(), "scores": [p.scores for p in predictions]}, out / "final.pt")
    dist_utils.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
