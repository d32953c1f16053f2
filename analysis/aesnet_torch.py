"""The aesnet model written again in PyTorch, functionally, from aesnet's
parameter names: the independent reference the tests compare against, and
the PyTorch side of the benchmarks.

Parameters are a dict name -> tensor using aesnet's paths
("image/stage2/block0/conv1/weight", "text/block0/attn/qkv/weight",
"head/color/image_proj", ...). See include/aesnet/model.h for the algebra
and docs/method.md for the losses.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

EOT = 2


def load_params(group, dtype=torch.float64):
    """Read an HDF5 group of aesnet parameters: (trainable, buffers)."""
    p, buffers = {}, {}

    def visit(name, obj):
        if hasattr(obj, "shape"):
            t = torch.tensor(obj[:].astype(np.float64), dtype=dtype)
            if name.endswith("running_mean") or name.endswith("running_var"):
                buffers[name] = t
            else:
                p[name] = t.requires_grad_()
    group.visititems(visit)
    return p, buffers


class AesNetTorch:
    def __init__(self, p, buffers, fusion="mlp", vit_heads=2, text_heads=2, fusion_heads=2):
        self.p, self.buffers = p, buffers
        self.kind = "vit" if "image/patch_embed/weight" in p else "resnet"
        self.fusion = fusion
        self.vit_heads, self.text_heads, self.fusion_heads = vit_heads, text_heads, fusion_heads
        # The frozen reference: a copy of the starting image encoder.
        self.ref = {k: v.detach().clone() for k, v in p.items() if k.startswith("image/")}
        self.ref_buffers = {k: v.clone() for k, v in buffers.items()}

    # ---- layers ----
    def bn(self, x, name, P, buffers, train):
        return F.batch_norm(x, buffers[name + "/running_mean"], buffers[name + "/running_var"],
                            P[name + "/weight"], P[name + "/bias"], training=train, momentum=0.1, eps=1e-5)

    def resnet(self, x, P, buffers, train, pre="image/"):
        x = F.conv2d(x, P[pre + "stem/conv/weight"], stride=2, padding=3)
        x = F.relu(self.bn(x, pre + "stem/bn", P, buffers, train))
        x = F.max_pool2d(x, 3, 2, 1)
        for s in range(1, 5):
            b = 0
            while f"{pre}stage{s}/block{b}/conv1/weight" in P:
                n = f"{pre}stage{s}/block{b}/"
                stride = 2 if (b == 0 and s > 1) else 1
                if n + "conv3/weight" in P:  # bottleneck, stride on the 3x3
                    y = F.relu(self.bn(F.conv2d(x, P[n + "conv1/weight"]), n + "bn1", P, buffers, train))
                    y = F.relu(self.bn(F.conv2d(y, P[n + "conv2/weight"], stride=stride, padding=1), n + "bn2", P, buffers, train))
                    y = self.bn(F.conv2d(y, P[n + "conv3/weight"]), n + "bn3", P, buffers, train)
                else:
                    y = F.conv2d(x, P[n + "conv1/weight"], stride=stride, padding=1)
                    y = F.relu(self.bn(y, n + "bn1", P, buffers, train))
                    y = self.bn(F.conv2d(y, P[n + "conv2/weight"], padding=1), n + "bn2", P, buffers, train)
                idn = x
                if n + "downsample/conv/weight" in P:
                    idn = F.conv2d(x, P[n + "downsample/conv/weight"], stride=stride)
                    idn = self.bn(idn, n + "downsample/bn", P, buffers, train)
                x = F.relu(y + idn)
                b += 1
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
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=att.device).triu(1), float("-inf"))
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
            x = self.block(x, P, f"{pre}block{l}/", self.vit_heads, False)
            l += 1
        return F.layer_norm(x[:, 0], (C,), P[pre + "ln_post/weight"], P[pre + "ln_post/bias"], 1e-5)

    def image(self, x, train=True):
        if self.kind == "vit":
            return self.vit(x, self.p)
        return self.resnet(x, self.p, self.buffers, train)

    def reference(self, x):
        if self.kind == "vit":
            return self.vit(x, self.ref)
        return self.resnet(x, self.ref, self.ref_buffers, False)

    def text(self, tok):
        P = self.p
        N, T = tok.shape
        x = P["text/token_embedding"][tok] + P["text/position_embedding"]
        l = 0
        while f"text/block{l}/ln1/weight" in P:
            x = self.block(x, P, f"text/block{l}/", self.text_heads, True)
            l += 1
        is_eot = tok == EOT
        pos = torch.where(is_eot.any(1), is_eot.float().argmax(1), torch.full((N,), T - 1, device=x.device))
        x = x[torch.arange(N, device=x.device), pos]
        return F.layer_norm(x, (x.shape[1],), P["text/ln_final/weight"], P["text/ln_final/bias"], 1e-5)

    def fuse(self, fin, Fv):
        P = self.p
        if self.fusion == "mlp":
            h1 = F.gelu(F.linear(fin, P["fusion/fc1/weight"], P["fusion/fc1/bias"]))
            return F.linear(h1, P["fusion/fc2/weight"], P["fusion/fc2/bias"])
        t0 = F.linear(fin[:, :Fv], P["fusion/image_token/weight"], P["fusion/image_token/bias"])
        t1 = F.linear(fin[:, Fv:], P["fusion/text_token/weight"], P["fusion/text_token/bias"])
        x = self.block(torch.stack([t0, t1], 1), P, "fusion/block0/", self.fusion_heads, False)[:, 0]
        x = F.layer_norm(x, (x.shape[1],), P["fusion/ln/weight"], P["fusion/ln/bias"], 1e-5)
        return F.linear(x, P["fusion/out/weight"], P["fusion/out/bias"])

    def embed(self, images, tok, partner, attrs):
        """v [B, Fv], u [A, B, Ft], and per attribute x_a, y_a [B, D]."""
        A, B, L = tok.shape
        v = self.image(images)
        u = self.text(tok.reshape(A * B, L)).reshape(A, B, -1)
        nv = F.normalize(v, dim=1)
        nu = F.normalize(u, dim=2)
        partner = torch.as_tensor(np.asarray(partner), dtype=torch.long, device=v.device)
        xs, ys = [], []
        for a, name in enumerate(attrs):
            h = v
            if self.fusion != "none":
                has = (partner[a] >= 0)
                other = nu[partner[a].clamp(min=0), torch.arange(B, device=v.device)] * has[:, None].to(nu.dtype)
                fout = self.fuse(torch.cat([nv, other], 1), v.shape[1])
                h = v + has[:, None].to(v.dtype) * fout
            xs.append(F.normalize(h @ self.p[f"head/{name}/image_proj"].T, dim=1))
            ys.append(F.normalize(u[a] @ self.p[f"head/{name}/text_proj"].T, dim=1))
        return v, u, xs, ys


def mac_loss(xs, ys, logscales, mask, group, weights):
    """Multi-attribute contrastive loss on the full batch. group[a][i]:
    equal values mark equal descriptions (multi-positive targets); pass
    distinct values for one-hot targets. Returns (L_mac, [L_a])."""
    total_w, mac, per_attr = 0.0, 0.0, []
    for a in range(len(xs)):
        valid = [i for i in range(len(mask[a])) if mask[a][i]]
        n = len(valid)
        if n == 0:
            per_attr.append(torch.tensor(0.0, device=xs[a].device))
            continue
        idx = torch.tensor(valid, device=xs[a].device)
        X, Y = xs[a][idx], ys[a][idx]
        g = torch.as_tensor(np.asarray(group[a])[valid], device=xs[a].device)
        tgt = (g[:, None] == g[None, :]).to(X.dtype)
        tgt = tgt / tgt.sum(1, keepdim=True)
        li = logscales[a].exp() * X @ Y.T
        # Cross-entropy against the (multi-positive) target minus the
        # target's own entropy: 0 at the optimum, as docs/method.md defines.
        ent = (tgt * tgt.clamp_min(1e-300).log()).sum()
        la = (2 * ent - (tgt * li.log_softmax(1)).sum() - (tgt * li.T.log_softmax(1)).sum()) / (2 * n)
        per_attr.append(la)
        mac = mac + weights[a] * la
        total_w += weights[a]
    return mac / total_w, per_attr


def sa_loss(v, vref, tau):
    """Semantic affinity loss (KL form) on the full batch."""
    B = v.shape[0]
    c = F.normalize(v, dim=1) @ F.normalize(v, dim=1).T
    r = F.normalize(vref, dim=1) @ F.normalize(vref, dim=1).T
    off = ~torch.eye(B, dtype=torch.bool, device=v.device)
    c = c[off].view(B, B - 1) / tau
    r = r[off].view(B, B - 1) / tau
    return (r.softmax(1) * (r.log_softmax(1) - c.log_softmax(1))).sum() / B
