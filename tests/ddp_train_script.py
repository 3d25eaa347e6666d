"""Run by tests/test_distributed.py, as one plain process or under torchrun: train the tiny RetinaNet on the toy
data and save the final weights (rank 0). Not a test module itself."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_toy_dataset, tiny_model, train_options  # noqa: E402

from activedet.engine import distributed as dist_utils  # noqa: E402
from activedet.engine.inference import predict_dataset  # noqa: E402
from activedet.engine.train import train_detector  # noqa: E402


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    dist_utils.init_distributed(torch.device("cpu"))
    data = make_toy_dataset(out / "data" / f"rank{dist_utils.rank()}", n_images=8)
    # group norm: batch statistics would differ between 1 process x 4 images and 2 processes x 2 images
    model = tiny_model(norm="group")
    options = train_options(optimizer="sgd", lr=0.01)
    train_detector(model, data, val_set=data, options=options, out_dir=out / "run", device="cpu", progress=False)
    predictions = predict_dataset(model, data, device="cpu", batch_size=3)
    if dist_utils.is_main_process():
        torch.save({"model": model.state_dict(), "scores": [p.scores for p in predictions]}, out / "final.pt")
    dist_utils.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
