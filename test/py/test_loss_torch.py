#!/usr/bin/python3
"""The AesNet losses against an independent torch implementation.

Runs $TEST_BIN_DIR/loss_dump (or argv[1]) into a temporary HDF5 file and,
for every case it wrote, recomputes the loss from its written definition
(docs/method.md) with full Bg x Bg matrices in float64 and autograd:

  MAC  for each attribute a with valid rows V_a (n_a = |V_a|) and
       s_a = exp(logscale_a): logits l = s_a x_a y_a^T; for each valid row
       i of l (image -> text) and of l^T (text -> image), the softmax over
       valid columns p_i and the target t_i (one-hot on i, or with
       duplicates as positives uniform over the valid columns of the same
       description), the row's loss is KL(t_i || p_i) = CE(p_i, t_i) - H(t_i);
       L_a = (sum of both directions' row losses) / (2 n_a);
       L_mac = sum_a w_a L_a / sum_{a : n_a > 0} w_a.
  SA   vh = normalize(v), rh = normalize(ref) (torch's F.normalize,
       eps 1e-12); c = vh vh^T, r = rh rh^T with the diagonal removed;
       kl: 1/Bg sum_i KL(softmax(r_i / tau) || softmax(c_i / tau));
       mse: mean over i != j of (c_ij - r_ij)^2.
  EMD  (aesnet eval --finetune) p = softmax(logits); per row
       EMD_r = (mean_k |cumsum(p)_k - cumsum(target)_k|^r)^(1/r); the
       loss is the batch mean of EMD_2.

Checked: the loss, the per-attribute losses, and every gradient (dx, dy,
dlogscale; dv; dlogits), both for the one-block call and for the sum of the shares
of three uneven row blocks, to ||a - b|| / ||b|| <= 1e-5.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

TOL = 1e-5


def find_tool():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.environ.get("TEST_BIN_DIR", "build/test"), "loss_dump")


def rel(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    return d / nb if nb > 1e-12 else d


def kl_rows(target, logits, valid_cols):
    """KL(target_i || softmax(logits_i over valid columns)) for every row."""
    logits = logits.masked_fill(~valid_cols[None, :], float("-inf"))
    logp = torch.log_softmax(logits, dim=1)
    pos = target > 0
    # only columns with positive target enter: there logp is finite
    terms = torch.where(pos, target * (torch.log(torch.where(pos, target, torch.ones_like(target)))
                                       - torch.where(pos, logp, torch.zeros_like(logp))),
                        torch.zeros_like(target))
    return terms.sum(dim=1)


def mac_reference(x, y, mask, groups, logscale, weights, dup):
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    ls = torch.tensor(logscale, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(weights, dtype=torch.float64)
    mask = torch.tensor(mask).bool()
    groups = torch.tensor(groups)
    A, Bg, _ = x.shape
    losses = []
    wsum = torch.zeros((), dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for a in range(A):
        m = mask[a]
        n = int(m.sum())
        if n == 0:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        s = torch.exp(ls[a])
        logits = s * (x[a] @ y[a].T)  # [Bg, Bg]: image i vs text j
        if dup:
            t = (groups[a][:, None] == groups[a][None, :]) & m[None, :]
        else:
            t = torch.eye(Bg, dtype=torch.bool)
        t = t.double()
        t = t / t.sum(dim=1, keepdim=True)
        i2t = kl_rows(t, logits, m)[m].sum()
        t2i = kl_rows(t, logits.T, m)[m].sum()
        La = (i2t + t2i) / (2 * n)
        losses.append(La)
        total = total + w[a] * La
        wsum = wsum + w[a]
    L = total / wsum if float(wsum) != 0.0 else total * 0.0
    L.backward()
    g = lambda t: (t.grad if t.grad is not None else torch.zeros_like(t)).numpy()  # noqa: E731
    return (float(L), np.array([float(v) for v in losses]), g(x), g(y), g(ls))


def sa_reference(v, ref, tau, kind):
    v = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor(ref, dtype=torch.float64)
    Bg = v.shape[0]
    vh = F.normalize(v, dim=1, eps=1e-12)
    rh = F.normalize(ref, dim=1, eps=1e-12)
    off = ~torch.eye(Bg, dtype=torch.bool)
    c = (vh @ vh.T)[off].view(Bg, Bg - 1)
    r = (rh @ rh.T)[off].view(Bg, Bg - 1)
    if kind == 0:
        logp = torch.log_softmax(r / tau, dim=1)
        logq = torch.log_softmax(c / tau, dim=1)
        L = (logp.exp() * (logp - logq)).sum() / Bg
    else:
        L = ((c - r) ** 2).sum() / (Bg * (Bg - 1))
    L.backward()
    return float(L), v.grad.numpy()


def emd_reference(logits, target):
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(target, dtype=torch.float64)
    d = torch.cumsum(torch.softmax(z, dim=1), 1) - torch.cumsum(q, 1)
    e1 = d.abs().mean(1)
    e2 = (d ** 2).mean(1).sqrt()
    L = e2.mean()
    L.backward()
    return float(L), z.grad.numpy(), e1.detach().numpy(), e2.detach().numpy()


def main():
    tool = find_tool()
    worst = {}

    def cmp(case, what, a, b):
        e = rel(a, b)
        worst[what] = max(worst.get(what, 0.0), e)
        check(e <= TOL, f"{case}: {what} rel err {e:.3g}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "loss.h5")
        proc = subprocess.run([tool, path], capture_output=True, text=True)
        check(proc.returncode == 0, f"loss_dump failed: {proc.stderr.strip()}")
        if proc.returncode != 0:
            return finish()
        with h5py.File(path, "r") as f:
            check(len(f["mac"]) >= 6 and len(f["sa"]) >= 5, "expected cases present")
            for name, g in f["mac"].items():
                L, la, dx, dy, dls = mac_reference(g["x"][()], g["y"][()], g["mask"][()],
                                                   g["groups"][()], g["logscale"][()],
                                                   g["weights"][()], int(g["dup"][0]))
                case = "mac/" + name
                cmp(case, "mac loss", g["loss"][0], L)
                cmp(case, "mac loss_a", g["loss_a"][()], la)
                cmp(case, "mac dx", g["dx"][()], dx)
                cmp(case, "mac dy", g["dy"][()], dy)
                cmp(case, "mac dlogscale", g["dlogscale"][()], dls)
                cmp(case, "mac loss (3 blocks)", g["loss_blocks"][0], L)
                cmp(case, "mac dx (3 blocks)", g["dx_blocks"][()], dx)
                cmp(case, "mac dy (3 blocks)", g["dy_blocks"][()], dy)
                cmp(case, "mac dlogscale (3 blocks)", g["dlogscale_blocks"][()], dls)
                print(f"{case}: loss {g['loss'][0]:.6f} torch {L:.6f}")
            for name, g in f["sa"].items():
                L, dv = sa_reference(g["v"][()], g["ref"][()], float(g["tau"][0]),
                                     int(g["kind"][0]))
                case = "sa/" + name
                cmp(case, "sa loss", g["loss"][0], L)
                cmp(case, "sa dv", g["dv"][()], dv)
                cmp(case, "sa loss (3 blocks)", g["loss_blocks"][0], L)
                cmp(case, "sa dv (3 blocks)", g["dv_blocks"][()], dv)
                print(f"{case}: loss {g['loss'][0]:.6f} torch {L:.6f}")
            check(len(f["emd"]) >= 3, "EMD cases present")
            for name, g in f["emd"].items():
                L, dz, e1, e2 = emd_reference(g["logits"][()], g["target"][()])
                case = "emd/" + name
                cmp(case, "emd loss", g["loss"][0], L)
                cmp(case, "emd dlogits", g["dlogits"][()], dz)
                cmp(case, "emd r=1 per row", g["emd1"][()], e1)
                cmp(case, "emd r=2 per row", g["emd2"][()], e2)
                print(f"{case}: loss {g['loss'][0]:.6f} torch {L:.6f}")
    for what, e in worst.items():
        print(f"worst {what}: {e:.3g}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
