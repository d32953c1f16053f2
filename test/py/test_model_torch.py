"""The whole AesNet model against the same model written in PyTorch.

test/tools/model_dump builds a small model (ResNet-18 at width 1/8, or a
2-block ViT; a 2-block text transformer; MLP fusion; three attributes with
learned logit scales; the semantic affinity loss against a frozen copy of
the initial image encoder), runs it on a batch with missing and repeated
descriptions, and dumps the initial parameters, the losses, every gradient,
the fusion partners it drew, and the parameters after 10 AdamW steps.
Here the model is written again, functionally, from those parameter names,
in float64: losses and every gradient must agree, and so must the 10
AdamW steps (torch.optim.AdamW, clip_grad_norm_, the warm-up + cosine
schedule, the logit-scale clamp)."""
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis"))
from aesnet_torch import AesNetTorch, load_params, mac_loss, sa_loss  # noqa: E402

torch.set_default_dtype(torch.float64)
TOOL = os.path.join(os.environ["TEST_BIN_DIR"], "model_dump")


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (nb if nb > 0 else 1.0)


def losses(model, f, partner, attrs, images, tok, mask, hid, weights, lam, tau):
    v, u, xs, ys = model.embed(images, tok, partner, attrs)
    ls = [model.p[f"head/{a}/logit_scale"] for a in attrs]
    mac, per_attr = mac_loss(xs, ys, ls, mask, hid, weights)
    vr = model.reference(images)
    sa = sa_loss(v, vr, tau)
    return mac, sa, mac + lam * sa, per_attr, v, vr


def Model(f, kind, fusion):
    p, buffers = load_params(f["param"])
    return AesNetTorch(p, buffers, fusion)


def run(kind, fusion, steps=10):
    d = tempfile.mkdtemp(prefix="aesnet-model-")
    out = os.path.join(d, "m.h5")
    subprocess.run([TOOL, out, kind, fusion, str(steps)], check=True, capture_output=True)
    f = h5py.File(out, "r")
    images = torch.tensor(f["input/images"][:].astype(np.float64))
    tok = torch.tensor(f["input/tokens"][:].astype(np.int64))
    mask = f["input/mask"][:]
    hid = f["input/hash_id"][:]
    weights = f["input/weights"][:].astype(np.float64)
    lam, tau = (float(x) for x in f["input/lambda_tau"][:])
    attrs = ["color", "light", "focus"]
    model = Model(f, kind, fusion)

    mac, sa, total, per_attr, v, vr = losses(model, f, f["partner/step0"][:], attrs, images, tok, mask, hid, weights, lam, tau)
    got = f["loss/mac_sa_total"][:]
    check(abs(got[0] - mac.item()) <= 1e-5 * abs(mac.item()), f"{kind}: MAC loss {got[0]} vs {mac.item()}")
    sa_tol = 1e-4 * abs(sa.item()) + 1e-9
    if steps == 1:
        # ResNet-50 at initialisation (see below): the affinity loss is a
        # small difference of nearly equal similarities; allow 4 times
        # PyTorch's own float32 error on it.
        sa32, grad32 = torch32(f, 0, fusion, attrs, images, tok, mask, hid, weights, lam, tau)
        sa_tol = max(sa_tol, 4 * abs(sa32 - sa.item()))
    check(abs(got[1] - sa.item()) <= sa_tol, f"{kind}: affinity loss {got[1]} vs {sa.item()}")
    check(abs(got[2] - total.item()) <= 1e-5 * abs(total.item()), f"{kind}: total loss {got[2]} vs {total.item()}")
    for a in range(3):
        ltol = 1e-4 if steps == 1 else 1e-5  # ResNet-50: see below
        check(abs(f["loss/attr"][a] - per_attr[a].item()) <= ltol * abs(per_attr[a].item()) + 1e-9,
              f"{kind}: L_{attrs[a]} {f['loss/attr'][a]} vs {per_attr[a].item()}")
    check(rel(f["out/v"][:], v.detach().numpy()) <= 1e-4, f"{kind}: image features v")
    check(rel(f["out/vref"][:], vr.detach().numpy()) <= 1e-5, f"{kind}: reference features")
    total.backward()
    if steps == 1:
        # ResNet-50 at initialisation: its features are nearly collinear
        # across images, so the losses' gradients are differences of nearly
        # equal numbers and float32 rounding (aesnet's or PyTorch's) moves
        # them by percents, unevenly across tensors. Judge aesnet's float32
        # by PyTorch's own float32 error against float64, on the whole
        # gradient.
        names = list(model.p)
        g64 = np.concatenate([model.p[n].grad.numpy().ravel() for n in names])
        g32 = np.concatenate([grad32[n].ravel() for n in names])
        gc = np.concatenate([f["step0/grad/" + n][:].ravel() for n in names])
        e32, ec = rel(g32, g64), rel(gc, g64)
        check(ec <= 4 * e32 + 1e-5, f"{kind}: whole gradient error {ec:.2e} vs PyTorch float32's {e32:.2e}")
        check(all(f["step0/grad/" + n].shape == model.p[n].shape for n in names), f"{kind}: gradient shapes")
        print(f"{kind}/{fusion}: {len(names)} parameter tensors, whole-gradient error {ec:.2e} "
              f"(PyTorch float32: {e32:.2e})")
        return
    worst = (0.0, "")
    for name, t in model.p.items():
        g = f["step0/grad/" + name][:]
        e = rel(g, t.grad.numpy() if t.grad is not None else np.zeros_like(g))
        if e > worst[0]:
            worst = (e, name)
        check(e <= 1e-4, f"{kind}/{fusion}: gradient of {name}: relative error {e:.2e}")
    print(f"{kind}/{fusion}: {len(model.p)} parameter tensors, worst gradient error {worst[0]:.2e} ({worst[1]})")

    # 10 AdamW steps. Each step's gradient is checked at aesnet's own
    # parameters of that step (a trajectory comparison would measure how
    # fast rounding differences grow through small-batch batch norm, not
    # correctness); torch's AdamW, fed aesnet's gradients, must then land
    # on aesnet's parameters after every step.
    model = Model(f, kind, fusion)
    opt_p = {n: t.detach().clone() for n, t in model.p.items()}
    decay = [t for n, t in opt_p.items() if (n.endswith("weight") and t.dim() > 1) or n.endswith("_proj")]
    dec_ids = {id(t) for t in decay}
    rest = [t for t in opt_p.values() if id(t) not in dec_ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    lrs = f["train/lr"][:]
    worst_g = worst_p = (0.0, "")
    for s in range(10):
        w = 3
        want = 1e-3 * (s + 1) / w if s < w else 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * (s - w) / (10 - w)))
        check(abs(lrs[s] - want) <= 1e-7 * want + 1e-12, f"schedule at step {s}: {lrs[s]} vs {want}")
        with torch.no_grad():
            for n, t in model.p.items():
                t.copy_(torch.tensor(f[f"step{s}/param/{n}"][:].astype(np.float64)))
                t.grad = None
        _, _, tl, _, _, _ = losses(model, f, f[f"partner/step{s}"][:], attrs, images, tok, mask, hid, weights, lam, tau)
        check(abs(f["train/loss"][s] - tl.item()) <= 1e-5 * abs(tl.item()), f"{kind}/{fusion}: loss at step {s}: {f['train/loss'][s]} vs {tl.item()}")
        tl.backward()
        # After a few steps small-batch batch norm can make the gradient
        # ill-conditioned: float32 rounding in a different order (another
        # thread count, the implicit-GEMM convolutions against im2col +
        # OpenBLAS) then moves some tensors by up to percents at the same
        # parameters. A tensor off by more than 1e-4 must then be within 4
        # times PyTorch's own float32 error on it, at the same parameters.
        g32 = None
        for n, t in model.p.items():
            e = rel(f[f"step{s}/grad/{n}"][:], t.grad.numpy())
            worst_g = max(worst_g, (e, f"{n} at step {s}"))
            if e > 1e-4 and g32 is None:
                _, g32 = torch32(f, s, fusion, attrs, images, tok, mask, hid, weights, lam, tau)
            e32 = rel(g32[n], t.grad.numpy()) if e > 1e-4 else 0.0
            check(e <= max(1e-4, 4 * e32), f"{kind}/{fusion}: gradient of {n} at step {s}: {e:.2e} "
                  f"(PyTorch float32: {e32:.2e})")
        for n, t in opt_p.items():
            t.grad = torch.tensor(f[f"step{s}/grad/{n}"][:].astype(np.float64))
        for g in opt.param_groups:
            g["lr"] = float(lrs[s])
        torch.nn.utils.clip_grad_norm_(list(opt_p.values()), 1.0)
        opt.step()
        with torch.no_grad():
            for a in attrs:
                opt_p[f"head/{a}/logit_scale"].clamp_(max=math.log(100))
        after = f[f"step{s + 1}/param"] if s < 9 else f["final"]
        for n, t in opt_p.items():
            e = rel(after[n][:], t.numpy())
            worst_p = max(worst_p, (e, f"{n} after step {s}"))
            check(e <= 1e-5, f"{kind}/{fusion}: {n} after AdamW step {s}: {e:.2e}")
    for n, t in model.buffers.items():
        e = rel(f["final/" + n][:], t.numpy())
        check(e <= 1e-4, f"{kind}/{fusion}: running statistics {n}: {e:.2e}")
    print(f"{kind}/{fusion}: 10 steps: worst gradient error {worst_g[0]:.2e} ({worst_g[1]}), "
          f"worst parameter error {worst_p[0]:.2e} ({worst_p[1]}); loss {f['train/loss'][0]:.4f} -> {f['train/loss'][9]:.4f}")


def torch32(f, s, fusion, attrs, images, tok, mask, hid, weights, lam, tau):
    """PyTorch in float32 at aesnet's parameters of step s: the affinity
    loss and the gradient of every parameter (float64 arrays by name)."""
    p32, b32 = load_params(f[f"step{s}/param"], torch.float32)
    _, sa32, t32, _, _, _ = losses(AesNetTorch(p32, b32, fusion), f, f[f"partner/step{s}"][:], attrs,
                                   images.float(), tok, mask, hid, weights, lam, tau)
    t32.backward()
    return sa32.item(), {n: t.grad.double().numpy() if t.grad is not None else np.zeros(t.shape)
                         for n, t in p32.items()}


def main():
    for case in [("resnet", "mlp"), ("vit", "transformer"), ("resnet", "none"), ("resnet50", "mlp", 1)]:
        run(*case)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
