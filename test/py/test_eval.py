"""The evaluation module against independent references on random data:
SRCC and PLCC against scipy.stats, binary accuracy, RMSE and MAE against
numpy, the ridge solution against numpy's least squares on the augmented
system (standardised features, unpenalised intercept), the probe's
penalty choice against a numpy grid search, and retrieval recall@K
against a numpy ranking (ties counted against the query)."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import scipy.stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

TOOL = os.path.join(os.environ["TEST_BIN_DIR"], "eval_tool")


def ridge_lstsq(X, y, lam):
    """min |y - b - Z w|^2 + lam |w|^2 with Z standardised (population std)."""
    mean, sd = X.mean(0), X.std(0)
    sd[sd < 1e-12] = 1.0
    Z = (X - mean) / sd
    n, F = Z.shape
    A = np.zeros((n + F, F + 1))
    A[:n, :F] = Z
    A[:n, F] = 1.0
    A[n:, :F] = np.sqrt(lam) * np.eye(F)
    rhs = np.concatenate([y, np.zeros(F)])
    sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
    w = sol[:F] / sd
    return w, sol[F] - w @ mean


def recall(q, k, K):
    qn = q.astype(np.float64)
    kn = k.astype(np.float64) / np.linalg.norm(k, axis=1, keepdims=True)
    s = qn @ kn.T
    pos = np.diag(s)
    above = (s >= pos[:, None]).sum(1) - 1  # others at least as close
    return float(np.mean(above < K))


def run_case(seed, tmp, ties):
    rng = np.random.default_rng(seed)
    n = 157
    truth = rng.uniform(1, 10, n)
    pred = truth + rng.normal(0, 2, n)
    if ties:  # scores on a coarse grid, as vote means often are
        truth = np.round(truth)
        pred = np.round(pred * 2) / 2
    mid = 5.5
    F = 7
    X = rng.normal(size=(120, F)) * rng.uniform(0.1, 5, F) + rng.normal(size=F)
    wt = rng.normal(size=F)
    y = X @ wt + 2.0 + rng.normal(0, 0.5, 120)
    Xva = rng.normal(size=(40, F)) * X.std(0) + X.mean(0)
    yva = Xva @ wt + 2.0 + rng.normal(0, 0.5, 40)
    lam = float(10 ** rng.uniform(-2, 3))
    r, D = 60, 8
    k = rng.normal(size=(r, D)).astype(np.float32)
    q = (k + rng.normal(0, 1.2, (r, D))).astype(np.float32)
    if ties:
        k[5] = k[6]  # a duplicated description: a tie for queries 5 and 6
    inp, out = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
    with h5py.File(inp, "w") as f:
        for name, v in dict(pred=pred, truth=truth, mid=np.array([mid]), X=X, y=y,
                            lam=np.array([lam]), Xva=Xva, yva=yva).items():
            f[name] = v.astype(np.float64)
        f["q"], f["k"] = q, k
    subprocess.run([TOOL, inp, out], check=True)
    with h5py.File(out, "r") as f:
        met, w, b = f["metrics"][:], f["w"][:], f["b"][0]
        pw, pb, pen = f["probe_w"][:], f["probe_b"][0], f["penalty"][0]
        rec = f["recall"][:]
    tag = f"seed {seed}{' ties' if ties else ''}"
    srcc = scipy.stats.spearmanr(pred, truth)[0]
    plcc = scipy.stats.pearsonr(pred, truth)[0]
    acc = np.mean((pred > mid) == (truth > mid))
    check(abs(met[0] - srcc) < 1e-10, f"{tag}: srcc {met[0]} vs scipy {srcc}")
    check(abs(met[1] - plcc) < 1e-10, f"{tag}: plcc {met[1]} vs scipy {plcc}")
    check(met[2] == acc, f"{tag}: acc {met[2]} vs {acc}")
    check(abs(met[3] - np.sqrt(np.mean((pred - truth) ** 2))) < 1e-10, f"{tag}: rmse")
    check(abs(met[4] - np.mean(np.abs(pred - truth))) < 1e-10, f"{tag}: mae")
    wr, br = ridge_lstsq(X, y, lam)
    check(np.allclose(w, wr, rtol=1e-7, atol=1e-9), f"{tag}: ridge w {w} vs lstsq {wr}")
    check(abs(b - br) < 1e-7, f"{tag}: ridge b {b} vs lstsq {br}")
    grid = 10.0 ** (-4 + 0.5 * np.arange(17))
    rmses = []
    for g in grid:
        wg, bg = ridge_lstsq(X, y, g)
        rmses.append(np.sqrt(np.mean((Xva @ wg + bg - yva) ** 2)))
    best = grid[int(np.argmin(rmses))]
    check(abs(pen - best) <= 1e-12 * best, f"{tag}: penalty {pen} vs numpy's {best}")
    wb, bb = ridge_lstsq(X, y, best)
    check(np.allclose(pw, wb, rtol=1e-7, atol=1e-9) and abs(pb - bb) < 1e-7, f"{tag}: probe fit")
    for i, K in enumerate([1, 2, 5, 10]):
        want = recall(q, k, K)
        check(abs(rec[i] - want) < 1e-12, f"{tag}: recall@{K} {rec[i]} vs numpy {want}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(4):
            run_case(seed, tmp, ties=False)
            run_case(seed, tmp, ties=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
