#!/usr/bin/python3
"""AdamW, the lr schedule and gradient clipping against torch.

Runs test/tools/optim_dump (found through $OPTIM_DUMP, else argv[1], else
$TEST_BIN_DIR/optim_dump), which takes ten optimizer steps in C on four
tensors (two with weight decay, two without) and writes the initial
parameters, every step's raw gradients, the lrs and the final parameters
and moments. The same ten steps are replayed with torch.optim.AdamW (one
param group with decay, one without; foreach off, the default CPU path),
torch.nn.utils.clip_grad_norm_ on the raw gradients, and the lr set per
step, once from the dumped schedule and once from the closed form computed
here:

  step s < warmup:  base * (s + 1) / warmup
  s >= total:       base * min_ratio
  otherwise:        lo + (base - lo) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2

Checks: the schedule equals the closed form to 1e-7 relative; the C norms
and clip factors equal torch's to 1e-6; final parameters and both moments
agree to ||c - torch|| / ||torch|| <= 1e-6 per tensor. A third replay
feeds torch the gradients scaled by the C clip factors instead of calling
clip_grad_norm_, isolating the AdamW step: it mirrors torch's float
roundings, so it should agree to the bit (reported, not asserted; the
norms differ in the last bits because torch reduces in float, so the
clipped runs differ by ~1e-7).
"""
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402


def tool_path():
    if os.environ.get("OPTIM_DUMP"):
        return os.environ["OPTIM_DUMP"]
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.environ["TEST_BIN_DIR"], "optim_dump")


def f32(x):
    """A float32 value as the Python float torch would receive."""
    return float(np.float32(x))


def closed_form_lr(s, base, warmup, total, min_ratio):
    lo = base * min_ratio
    if s < warmup:
        return base * (s + 1) / warmup
    if s >= total:
        return lo
    progress = (s - warmup) / (total - warmup)
    return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def replay(d, lrs, cfg, clips=None):
    """torch's run; with clips, the gradients are scaled by the C clip
    factors instead of clip_grad_norm_, isolating the AdamW step."""
    nt = cfg["ntensors"]
    params = [torch.nn.Parameter(torch.from_numpy(d[f"init/p{k}"][()].copy())) for k in range(nt)]
    decay = d["decay"][()]
    groups = [
        {"params": [params[k] for k in range(nt) if decay[k]], "weight_decay": cfg["weight_decay"]},
        {"params": [params[k] for k in range(nt) if not decay[k]], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lrs[0], betas=(cfg["beta1"], cfg["beta2"]),
                            eps=cfg["eps"], amsgrad=False, maximize=False, foreach=False)
    norms = []
    for s in range(cfg["steps"]):
        for k in range(nt):
            params[k].grad = torch.from_numpy(d[f"grad/{s}/p{k}"][()].copy())
        if clips is None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg["max_norm"])))
        else:
            for p in params:
                p.grad.mul_(f32(clips[s]))
        for g in opt.param_groups:
            g["lr"] = lrs[s]
        opt.step()
    state = [opt.state[p] for p in params]
    return ([p.detach().numpy() for p in params], [st["exp_avg"].numpy() for st in state],
            [st["exp_avg_sq"].numpy() for st in state], norms)


def main():
    with tempfile.TemporaryDirectory(prefix="aesnet-optim-") as out:
        path = os.path.join(out, "optim.h5")
        subprocess.run([tool_path(), path], check=True)
        return compare(path)


def compare(path):
    worst = {"p": 0.0, "m": 0.0, "v": 0.0}
    same = total_el = same_step = 0
    worst_step = 0.0
    with h5py.File(path, "r") as d:
        cfg = {k: d[f"config/{k}"][0] for k in
               ("beta1", "beta2", "eps", "weight_decay", "base_lr", "min_ratio", "max_norm")}
        cfg = {k: f32(v) for k, v in cfg.items()}
        for k in ("warmup", "total", "steps", "ntensors"):
            cfg[k] = int(d[f"config/{k}"][0])
        c_lr = d["lr"][()]
        c_clip = d["clip"][()]
        c_norm = d["norm"][()]
        check(len(c_lr) == cfg["steps"], "one lr per step")

        # The schedule, against the closed form.
        py_lr = [closed_form_lr(s, cfg["base_lr"], cfg["warmup"], cfg["total"], cfg["min_ratio"])
                 for s in range(cfg["steps"])]
        lr_err = max(abs(float(a) - b) / b for a, b in zip(c_lr, py_lr))
        check(lr_err <= 1e-7, f"lr schedule vs closed form: rel err {lr_err:.3g}")
        check(abs(float(c_lr[0]) - cfg["base_lr"] / cfg["warmup"]) <= 1e-7 * cfg["base_lr"],
              "step 0 gets base / warmup")
        # The run exercised both clipped and unclipped steps.
        check((c_clip < 1).sum() >= 3 and (c_clip == 1).sum() >= 3,
              f"some steps clip, some do not: {c_clip.tolist()}")

        finals = [(d[f"final/p{k}"][()], d[f"final/m{k}"][()], d[f"final/v{k}"][()])
                  for k in range(cfg["ntensors"])]
        inits = [d[f"init/p{k}"][()] for k in range(cfg["ntensors"])]

        # The AdamW step alone: torch fed the C-clipped gradients. Every
        # rounding is mirrored, so the two should agree to the bit.
        tp, tm, tv, _ = replay(d, [f32(x) for x in c_lr], cfg, clips=c_clip)
        for k, (cp, cm, cv) in enumerate(finals):
            for name, c, t in (("p", cp, tp[k]), ("m", cm, tm[k]), ("v", cv, tv[k])):
                e = rel(c, t)
                worst_step = max(worst_step, e)
                check(e <= 1e-6, f"AdamW alone: tensor {k} {name}: rel err {e:.3g}")
                same_step += int((c == t).sum())

        for label, lrs in (("dumped lr", [f32(x) for x in c_lr]),
                           ("closed-form lr", [f32(x) for x in py_lr])):
            tp, tm, tv, tnorm = replay(d, lrs, cfg)
            nerr = max(abs(a - b) / b for a, b in zip(c_norm, tnorm))
            check(nerr <= 1e-6, f"{label}: global norm vs torch: rel err {nerr:.3g}")
            t_clip = [min(1.0, cfg["max_norm"] / (n + 1e-6)) for n in tnorm]
            cerr = max(abs(a - b) / b for a, b in zip(c_clip, t_clip))
            check(cerr <= 1e-6, f"{label}: clip factor vs torch: rel err {cerr:.3g}")
            for k, (cp, cm, cv) in enumerate(finals):
                for name, c, t in (("p", cp, tp[k]), ("m", cm, tm[k]), ("v", cv, tv[k])):
                    e = rel(c, t)
                    worst[name] = max(worst[name], e)
                    check(e <= 1e-6, f"{label}: tensor {k} {name}: rel err {e:.3g}")
                    same += int((c == t).sum())
                    total_el += c.size
                check(rel(cp, inits[k]) > 1e-3, f"tensor {k} moved")
    print(f"AdamW step alone vs torch: worst rel err {worst_step:.3g}; "
          f"{same_step}/{total_el // 2} elements bit-identical")
    print(f"with torch's clip_grad_norm_: worst rel err p {worst['p']:.3g} m {worst['m']:.3g} "
          f"v {worst['v']:.3g}; {same}/{total_el} elements bit-identical")
    print(f"lr schedule vs closed form: worst rel err {lr_err:.3g}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
