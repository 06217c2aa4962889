"""Train the small CNN judge of class-conditional Fashion-MNIST samples (vqforge.evaluate.classifier) on the
train split and write src/vqforge/demo_assets/fashion_classifier.{safetensors,json} with its test accuracy.

    PYTHONPATH=src python bench/train_fashion_classifier.py [--epochs 4] [--out src/vqforge/demo_assets]

Needs Debian's dataset-fashion-mnist (or VQFORGE_FASHION_MNIST). Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images  # noqa: E402
from vqforge.evaluate.classifier import SmallClassifier  # noqa: E402
from vqforge.io import save_safetensors, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "src" / "vqforge" / "demo_assets"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    xi, yi = load_fashion_mnist("train")
    x, y = to_model_images(xi, 28), torch.from_numpy(yi)
    xt, yt = to_model_images(load_fashion_mnist("test")[0], 28), torch.from_numpy(load_fashion_mnist("test")[1])
    model = SmallClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = args.epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(len(x) // 128):
            b = order[i * 128:(i + 1) * 128]
            xb = x[b]
            shift = torch.randint(-2, 3, (2,))  # small random translations
            xb = torch.roll(xb, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = (model.predict(xt) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    out = Path(args.out)
    save_safetensors(out / "fashion_classifier.safetensors", model.state_dict())
    write_json(out / "fashion_classifier.json", {
        "test_accuracy": round(acc, 4), "trained_on": "Fashion-MNIST train split (60000 images)",
        "epochs": args.epochs, "seed": args.seed, "command": "PYTHONPATH=src python bench/train_fashion_classifier.py",
        "wall_time_s": round(time.time() - t0)})


if __name__ == "__main__":
    main()
