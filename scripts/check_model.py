#!/usr/bin/env python
"""An independent check of a model trained here: timm, safetensors and PIL only.

Nothing of the ``tomato`` package is imported: the model is built by timm from the name
in its card, loaded with safetensors, and fed each val photo squashed to the card's size
(a plain resize, bicubic, no centre crop) and normalised with the card's mean and std.
The labels are the photos' class folders in the card's class order. Prints top-1/top-5
beside the card's and exits 1 when top-1 differs from the card's by more than ``--within``
points::

    python scripts/check_model.py --weights data/weights/deit-tiny-imagenette --data ../shared/imagenette/val
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="data/weights/deit-tiny-imagenette", help="folder with the card and weights")
    ap.add_argument("--data", default="../shared/imagenette/val", help="val/<wnid>/*.JPEG")
    ap.add_argument("--within", type=float, default=0.2, help="allowed |top-1 - card's| in points")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)

    folder = Path(args.weights)
    card = json.loads((folder / "model_card.json").read_text())
    wnids = [c["wnid"] for c in card["classes"]]
    t = card["eval_transform"]
    model = timm.create_model(card["model"], pretrained=False, num_classes=len(wnids))
    model.load_state_dict(load_file(folder / card["weights_file"]))
    model.eval()
    mean = np.asarray(t["mean"], dtype=np.float32)
    std = np.asarray(t["std"], dtype=np.float32)
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[t["interpolation"]]
    photos = [(p, i) for i, w in enumerate(wnids) for p in sorted((Path(args.data) / w).iterdir())
              if p.suffix.lower() in (".jpeg", ".jpg", ".png")]

    def read(path: Path) -> np.ndarray:
        im = Image.open(path).convert("RGB").resize((t["size"], t["size"]), resample)
        return ((np.asarray(im, dtype=np.float32) / 255 - mean) / std).transpose(2, 0, 1)

    hit1 = hit5 = 0
    with torch.no_grad():
        for start in range(0, len(photos), args.batch_size):
            chunk = photos[start:start + args.batch_size]
            x = torch.from_numpy(np.stack([read(p) for p, _ in chunk]))
            y = torch.tensor([label for _, label in chunk])
            top = model(x).topk(5, dim=1).indices
            hit1 += int((top[:, 0] == y).sum())
            hit5 += int((top == y[:, None]).any(1).sum())
    n = len(photos)
    top1, top5 = 100 * hit1 / n, 100 * hit5 / n
    said = card["val"]["top1"]
    print(f"{card['model']} ({folder}): top-1 {top1:.2f}%, top-5 {top5:.2f}% on {n} photos at {t['size']} px; "
          f"the card says {said:.2f}% ({top1 - said:+.2f} points)")
    return 0 if abs(top1 - said) <= args.within else 1


if __name__ == "__main__":
    sys.exit(main())
