#!/usr/bin/env python3
"""Reference pipeline in PyTorch (Python), the tool most users would reach for instead.

It implements the same job as the project's `train` command with the seed architecture
(Conv32-BN-Pool, Conv64-Pool, Conv128-Pool, Dense128, Dropout 0.3, Dense1) or, with
--arch cellnet, the project's default network (see src/model/model.cpp), Adam(5e-4),
binary cross-entropy, batch 32, on-the-fly augmentation (rotation 20 deg, zoom 0.2,
horizontal and vertical flips), images decoded from PNG with OpenCV every epoch.
It prints one JSON line with the measured figures, so it can be compared in the same run
against the project's own training on the same data and machine.

Needs Debian's python3-torch, python3-torchvision and python3-opencv (run with /usr/bin/python3).
For a fair comparison run it the way a careful user would: threads set to the core count and
tcmalloc preloaded (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4).
"""
import argparse, glob, json, os, random, time

import cv2
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
import torchvision.transforms as T

CLASSES = ["Uninfected", "Parasitized"]  # label 0, 1


def scan(root):
    items = []
    for label, c in enumerate(CLASSES):
        for p in sorted(glob.glob(os.path.join(root, c, "*.png"))):
            items.append((p, label))
    return items


def split(items, seed, by_patient):
    rng = random.Random(seed)
    if by_patient:
        pats = sorted({os.path.basename(p).split("_IMG")[0] for p, _ in items})
        rng.shuffle(pats)
        n = len(pats)
        test = set(pats[: n // 5]); val = set(pats[n // 5: 2 * n // 5])
        key = lambda p: os.path.basename(p).split("_IMG")[0]
        return ([i for i in items if key(i[0]) not in test | val],
                [i for i in items if key(i[0]) in val],
                [i for i in items if key(i[0]) in test])
    items = items[:]
    rng.shuffle(items)
    n = len(items)
    return items[2 * n // 5:], items[n // 5: 2 * n // 5], items[: n // 5]


class Cells(Dataset):
    def __init__(self, items, size, augment):
        self.items, self.size = items, size
        self.aug = T.Compose([T.RandomAffine(degrees=20, scale=(0.8, 1.2)),
                              T.RandomHorizontalFlip(), T.RandomVerticalFlip()]) if augment else None

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode {path}")
        img = cv2.resize(img, (self.size, self.size))
        x = torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)
        if self.aug is not None:
            x = self.aug(x)
        return x, torch.tensor([float(label)])


def seed_cnn(size):
    f = size // 8
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(32), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * f * f, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 1))


def cellnet():
    """The project's default network, layer for layer: Conv-BN-ReLU stages of 16, 32, 64, 128
    channels (two convolutions in the last two), max pooling between them, global average
    pooling, dropout 0.2 and one logit."""
    layers, cin = [], 3
    widths = [16, 32, 64, 128]
    for i, w in enumerate(widths):
        for _ in range(2 if i >= 2 else 1):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        if i + 1 < len(widths):
            layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, 1)]
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding Parasitized/ and Uninfected/")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--arch", choices=["seed", "cellnet"], default="seed")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: whole epoch)")
    ap.add_argument("--by-patient", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-data", help="evaluate on this folder (Parasitized/, Uninfected/) instead of the held-out split")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, val, test = split(scan(a.data), a.seed, a.by_patient)
    if a.test_data:
        test = scan(a.test_data)
    mk = lambda items, aug, shuf: DataLoader(Cells(items, a.image_size, aug), batch_size=a.batch_size,
                                             shuffle=shuf, num_workers=a.workers)
    model = seed_cnn(a.image_size) if a.arch == "seed" else cellnet()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    lossf = nn.BCEWithLogitsLoss()
    seen, t_train = 0, 0.0
    for _ in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(mk(train, True, True)):
            opt.zero_grad()
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
            seen += x.shape[0]
            if a.max_steps and step + 1 >= a.max_steps:
                break
        t_train += time.perf_counter() - t0
    model.eval()
    correct = n = 0
    tp = fn = fp = tn = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for x, y in mk(test, False, False):
            pred = (model(x) > 0).float()
            correct += (pred == y).sum().item()
            tp += ((pred == 1) & (y == 1)).sum().item(); fn += ((pred == 0) & (y == 1)).sum().item()
            fp += ((pred == 1) & (y == 0)).sum().item(); tn += ((pred == 0) & (y == 0)).sum().item()
            n += x.shape[0]
    t_eval = time.perf_counter() - t0
    print(json.dumps({"tool": "pytorch-python", "torch": torch.__version__, "arch": a.arch, "threads": a.threads,
                      "workers": a.workers, "image_size": a.image_size, "train_images": seen,
                      "train_images_per_s": round(seen / t_train, 1), "eval_images": n,
                      "eval_images_per_s": round(n / t_eval, 1), "test_accuracy": round(correct / max(n, 1), 4),
                      "sensitivity": round(tp / max(tp + fn, 1), 4), "specificity": round(tn / max(tn + fp, 1), 4)}))


if __name__ == "__main__":
    main()
