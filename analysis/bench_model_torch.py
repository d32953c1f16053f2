#!/usr/bin/python3
"""The PyTorch side of the model benchmark: the same AesNet model (loaded
from the parameters test/tools/bench_model dumped), the same batch shapes,
the same step (forward, both losses, backward, clipping, AdamW), timed on
the same threads. Prints a RESULT line that jobs/bench-model.sh pairs with
aesnet's.

    bench_model_torch.py PARAMS.h5 MODEL BATCH STEPS [cpu|cuda [fp32|bf16]]

On cuda with bf16, the forward pass and the losses run under
torch.autocast(bfloat16) (PyTorch eager mixed precision, fp32 master
weights), the comparison test/device/run.sh makes.
"""
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aesnet_torch import AesNetTorch, load_params, mac_loss, sa_loss  # noqa: E402

ATTRS = ["color", "light", "composition", "focus", "subject"]


def main():
    path, model_name, B, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    dev = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    bf16 = len(sys.argv) > 6 and sys.argv[6] == "bf16"
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
    torch.set_num_threads(threads)
    with h5py.File(path, "r") as f:
        p, buffers = load_params(f["param"], torch.float32)
    p = {k: v.detach().to(dev).requires_grad_() for k, v in p.items()}
    buffers = {k: v.to(dev) for k, v in buffers.items()}
    heads = {"demo": (2, 4), "resnet50": (12, 8), "vit_b16": (12, 8)}[model_name]
    m = AesNetTorch(p, buffers, "mlp", vit_heads=heads[0], text_heads=heads[1])
    R = 64 if model_name == "demo" else 224
    L = p["text/position_embedding"].shape[0]
    V = p["text/token_embedding"].shape[0]
    A = len(ATTRS)
    g = torch.Generator().manual_seed(5)
    images = torch.randn(B, 3, R, R, generator=g)
    tok = torch.zeros(A, B, L, dtype=torch.long)
    for a in range(A):
        for i in range(B):
            n = L // 2 + int(torch.randint(0, L // 2 - 1, (1,), generator=g))
            tok[a, i, 0] = 1
            tok[a, i, 1:n] = torch.randint(3, V, (n - 1,), generator=g)
            tok[a, i, n] = 2
    images, tok = images.to(dev), tok.to(dev)
    mask = np.ones((A, B), dtype=bool)
    group = np.arange(A * B).reshape(A, B)
    partner = np.array([[(a + 1 + i) % A for i in range(B)] for a in range(A)])
    decay = [t for n, t in p.items() if (n.endswith("weight") and t.dim() > 1) or n.endswith("_proj")]
    ids = {id(t) for t in decay}
    rest = [t for t in p.values() if id(t) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    params = list(p.values())
    tf = tb = tu = 0.0
    for s in range(steps + 1):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            v, u, xs, ys = m.embed(images, tok, partner, ATTRS)
            ls = [p[f"head/{a}/logit_scale"] for a in ATTRS]
            loss = mac_loss(xs, ys, ls, mask, group, [1.0] * A)[0] + sa_loss(v, v.detach(), 0.1)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for a in ATTRS:
                p[f"head/{a}/logit_scale"].clamp_(max=np.log(100))
        sync()
        t3 = time.perf_counter()
        if s:
            tf, tb, tu = tf + t1 - t0, tb + t2 - t1, tu + t3 - t2
    step = (tf + tb + tu) / steps
    where = f"{threads} threads" if dev.type == "cpu" else f"{torch.cuda.get_device_name(dev)}" + (" bf16 autocast" if bf16 else "")
    print(f"PyTorch {torch.__version__} {model_name}: batch {B}, {where}: step {1e3 * step:.1f} ms = "
          f"forward+loss {1e3 * tf / steps:.1f} + backward {1e3 * tb / steps:.1f} + update {1e3 * tu / steps:.1f}; "
          f"{B / step:.2f} images/s")
    print(f"RESULT model={model_name} batch={B} step_ms={1e3 * step:.3f} images_per_s={B / step:.2f}")


if __name__ == "__main__":
    main()
