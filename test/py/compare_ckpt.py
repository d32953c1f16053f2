#!/usr/bin/python3
"""Compare two aesnet checkpoints tensor by tensor (a helper of the
training tests, not a test itself).

    compare_ckpt.py A.h5 B.h5 TOL [--exact]

Exit 0 when every /model tensor (and, with --exact, every /optim moment)
agrees: ||a - b|| / ||b|| <= TOL, or bit for bit with --exact. Prints the
worst tensor."""
import sys

import h5py
import numpy as np


def tensors(f, group):
    out = {}
    if group not in f:
        return out

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[:]
    f[group].visititems(visit)
    return out


def main():
    a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    exact = "--exact" in sys.argv
    fa, fb = h5py.File(a, "r"), h5py.File(b, "r")
    groups = ["model", "optim"] if exact else ["model"]
    worst, bad = (0.0, ""), []
    for g in groups:
        ta, tb = tensors(fa, g), tensors(fb, g)
        if set(ta) != set(tb):
            print(f"{g}: different tensors: {sorted(set(ta) ^ set(tb))[:5]}")
            return 1
        for n in ta:
            x, y = ta[n].astype(np.float64), tb[n].astype(np.float64)
            if exact:
                if not np.array_equal(ta[n], tb[n]):
                    bad.append(f"{g}/{n}")
                continue
            e = np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)
            if e > worst[0]:
                worst = (e, f"{g}/{n}")
            if e > tol:
                bad.append(f"{g}/{n} ({e:.2e})")
    if exact:
        print(f"{a} vs {b}: {'bit-identical' if not bad else str(len(bad)) + ' tensors differ, e.g. ' + bad[0]}")
    else:
        print(f"{a} vs {b}: worst {worst[0]:.2e} ({worst[1]}); {len(bad)} above {tol:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
