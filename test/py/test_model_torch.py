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
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

torch.set_default_dtype(torch.float64)
TOOL = os.path.join(os.environ["TEST_BIN_DIR"], "model_dump")
EOT = 2


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (nb if nb > 0 else 1.0)


class Model:
    def __init__(self, f, kind, fusion):
        self.kind = kind
        self.fusion = fusion
        self.p = {}
        self.buffers = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                t = torch.tensor(obj[:].astype(np.float64))
                if name.endswith("running_mean") or name.endswith("running_var"):
                    self.buffers[name] = t
                else:
                    self.p[name] = t.requires_grad_()
        f["param"].visititems(visit)
        self.ref = {k[len("image/"):]: v.detach().clone() for k, v in self.p.items() if k.startswith("image/")}
        self.ref_buffers = {k: v.clone() for k, v in self.buffers.items()}

    # ---- layers ----
    def bn(self, x, name, P, buffers, train):
        return F.batch_norm(x, buffers[name + "/running_mean"], buffers[name + "/running_var"],
                            P[name + "/weight"], P[name + "/bias"], training=train, momentum=0.1, eps=1e-5)

    def resnet(self, x, P, buffers, train, pre="image/"):
        x = F.conv2d(x, P[pre + "stem/conv/weight"], stride=2, padding=3)
        x = F.relu(self.bn(x, pre + "stem/bn", P, buffers, train))
        x = F.max_pool2d(x, 3, 2, 1)
        for s in range(1, 5):
            for b in range(2):
                n = f"{pre}stage{s}/block{b}/"
                stride = 2 if (b == 0 and s > 1) else 1
                y = F.conv2d(x, P[n + "conv1/weight"], stride=stride, padding=1)
                y = F.relu(self.bn(y, n + "bn1", P, buffers, train))
                y = F.conv2d(y, P[n + "conv2/weight"], padding=1)
                y = self.bn(y, n + "bn2", P, buffers, train)
                idn = x
                if n + "downsample/conv/weight" in P:
                    idn = F.conv2d(x, P[n + "downsample/conv/weight"], stride=stride)
                    idn = self.bn(idn, n + "downsample/bn", P, buffers, train)
                x = F.relu(y + idn)
        return x.mean(dim=(2, 3))

    def block(self, x, P, n, heads, causal):
        B, T, C = x.shape
        h = F.layer_norm(x, (C,), P[n + "ln1/weight"], P[n + "ln1/bias"], 1e-5)
        qkv = F.linear(h, P[n + "attn/qkv/weight"], P[n + "attn/qkv/bias"])
        q, k, v = qkv.split(C, dim=2)
        hs = C // heads
        q = q.view(B, T, heads, hs).transpose(1, 2)
        k = k.view(B, T, heads, hs).transpose(1, 2)
        v = v.view(B, T, heads, hs).transpose(1, 2)
        att = q @ k.transpose(-1, -2) / math.sqrt(hs)
        if causal:
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, P[n + "attn/proj/weight"], P[n + "attn/proj/bias"])
        h = F.layer_norm(x, (C,), P[n + "ln2/weight"], P[n + "ln2/bias"], 1e-5)
        h = F.gelu(F.linear(h, P[n + "mlp/fc/weight"], P[n + "mlp/fc/bias"]))
        return x + F.linear(h, P[n + "mlp/proj/weight"], P[n + "mlp/proj/bias"])

    def vit(self, x, P, pre="image/"):
        w = P[pre + "patch_embed/weight"]
        x = F.conv2d(x, w, stride=w.shape[-1])
        B, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([P[pre + "class_token"].expand(B, 1, C), x], 1) + P[pre + "position_embedding"]
        x = F.layer_norm(x, (C,), P[pre + "ln_pre/weight"], P[pre + "ln_pre/bias"], 1e-5)
        l = 0
        while f"{pre}block{l}/ln1/weight" in P:
            x = self.block(x, P, f"{pre}block{l}/", 2, False)
            l += 1
        return F.layer_norm(x[:, 0], (C,), P[pre + "ln_post/weight"], P[pre + "ln_post/bias"], 1e-5)

    def fuse(self, fin, Fv):
        P = self.p
        if self.fusion == "mlp":
            h1 = F.gelu(F.linear(fin, P["fusion/fc1/weight"], P["fusion/fc1/bias"]))
            return F.linear(h1, P["fusion/fc2/weight"], P["fusion/fc2/bias"])
        t0 = F.linear(fin[:, :Fv], P["fusion/image_token/weight"], P["fusion/image_token/bias"])
        t1 = F.linear(fin[:, Fv:], P["fusion/text_token/weight"], P["fusion/text_token/bias"])
        x = self.block(torch.stack([t0, t1], 1), P, "fusion/block0/", 2, False)[:, 0]
        x = F.layer_norm(x, (x.shape[1],), P["fusion/ln/weight"], P["fusion/ln/bias"], 1e-5)
        return F.linear(x, P["fusion/out/weight"], P["fusion/out/bias"])

    def image(self, x, train=True):
        if self.kind == "vit":
            return self.vit(x, self.p)
        return self.resnet(x, self.p, self.buffers, train)

    def reference(self, x):
        P = {"image/" + k: v for k, v in self.ref.items()}
        if self.kind == "vit":
            return self.vit(x, P)
        return self.resnet(x, P, self.ref_buffers, False)

    def text(self, tok):
        P = self.p
        N, T = tok.shape
        x = P["text/token_embedding"][tok] + P["text/position_embedding"]
        l = 0
        while f"text/block{l}/ln1/weight" in P:
            x = self.block(x, P, f"text/block{l}/", 2, True)
            l += 1
        pos = []
        for row in tok.tolist():
            pos.append(row.index(EOT) if EOT in row else T - 1)
        x = x[torch.arange(N), torch.tensor(pos)]
        C = x.shape[1]
        return F.layer_norm(x, (C,), P["text/ln_final/weight"], P["text/ln_final/bias"], 1e-5)


def losses(model, f, partner, attrs, images, tok, mask, hid, weights, lam, tau):
    A, B, L = tok.shape
    v = model.image(images)
    u = model.text(tok.reshape(A * B, L)).reshape(A, B, -1)
    nv = F.normalize(v, dim=1)
    nu = F.normalize(u, dim=2)
    xs, ys = [], []
    for a, name in enumerate(attrs):
        h = v
        if model.fusion != "none":
            fin = torch.cat([nv, torch.zeros(B, u.shape[2])], 1)
            rows = []
            for i in range(B):
                c = int(partner[a, i])
                rows.append(torch.cat([nv[i], nu[c, i]]) if c >= 0 else fin[i])
            fout = model.fuse(torch.stack(rows), v.shape[1])
            keep = torch.tensor([1.0 if partner[a, i] >= 0 else 0.0 for i in range(B)])[:, None]
            h = v + keep * fout
        xs.append(F.normalize(h @ model.p[f"head/{name}/image_proj"].T, dim=1))
        ys.append(F.normalize(u[a] @ model.p[f"head/{name}/text_proj"].T, dim=1))
    total_w = 0.0
    mac = 0.0
    per_attr = []
    for a, name in enumerate(attrs):
        valid = [i for i in range(B) if mask[a, i]]
        n = len(valid)
        if n == 0:
            per_attr.append(torch.tensor(0.0))
            continue
        idx = torch.tensor(valid)
        X, Y = xs[a][idx], ys[a][idx]
        s = model.p[f"head/{name}/logit_scale"].exp()
        hv = hid[a][valid]
        tgt = torch.tensor([[1.0 if hv[i] == hv[j] else 0.0 for j in range(n)] for i in range(n)])
        tgt = tgt / tgt.sum(1, keepdim=True)
        li = s * X @ Y.T
        # Cross-entropy against the (multi-positive) target minus the
        # target's own entropy: 0 at the optimum, as docs/method.md defines.
        ent = (tgt * tgt.clamp_min(1e-300).log()).sum()
        la = (2 * ent - (tgt * li.log_softmax(1)).sum() - (tgt * li.T.log_softmax(1)).sum()) / (2 * n)
        per_attr.append(la)
        mac = mac + weights[a] * la
        total_w += weights[a]
    mac = mac / total_w
    vr = model.reference(images)
    c = F.normalize(v, dim=1) @ F.normalize(v, dim=1).T
    r = F.normalize(vr, dim=1) @ F.normalize(vr, dim=1).T
    off = ~torch.eye(B, dtype=torch.bool)
    c = c[off].view(B, B - 1) / tau
    r = r[off].view(B, B - 1) / tau
    Pr = r.softmax(1)
    sa = (Pr * (r.log_softmax(1) - c.log_softmax(1))).sum() / B
    return mac, sa, mac + lam * sa, per_attr, v, vr


def run(kind, fusion):
    d = tempfile.mkdtemp(prefix="aesnet-model-")
    out = os.path.join(d, "m.h5")
    subprocess.run([TOOL, out, kind, fusion], check=True, capture_output=True)
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
    check(abs(got[1] - sa.item()) <= 1e-4 * abs(sa.item()) + 1e-9, f"{kind}: affinity loss {got[1]} vs {sa.item()}")
    check(abs(got[2] - total.item()) <= 1e-5 * abs(total.item()), f"{kind}: total loss {got[2]} vs {total.item()}")
    for a in range(3):
        check(abs(f["loss/attr"][a] - per_attr[a].item()) <= 1e-5 * abs(per_attr[a].item()) + 1e-9, f"{kind}: L_{attrs[a]}")
    check(rel(f["out/v"][:], v.detach().numpy()) <= 1e-5, f"{kind}: image features v")
    check(rel(f["out/vref"][:], vr.detach().numpy()) <= 1e-5, f"{kind}: reference features")
    total.backward()
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
        for n, t in model.p.items():
            e = rel(f[f"step{s}/grad/{n}"][:], t.grad.numpy())
            worst_g = max(worst_g, (e, f"{n} at step {s}"))
            check(e <= 1e-4, f"{kind}/{fusion}: gradient of {n} at step {s}: {e:.2e}")
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


def main():
    for kind, fusion in [("resnet", "mlp"), ("vit", "transformer"), ("resnet", "none")]:
        run(kind, fusion)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
