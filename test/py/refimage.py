"""The data-set resize written from its definition in float64 numpy, as an
independent reference for the tests (src/data/image.c is the code under
test): short = min(w, h); window x0 = (w - short) / 2, y0 = (h - short) / 2,
side short; per axis, area means when shrinking, bilinear at
x0 + (i + 0.5) * short / S - 0.5 (clamped to the image) when growing;
rounded half up."""
import numpy as np


def area_axis(v, axis, x0, c, o):
    """Mean of the piecewise-constant signal over [x0 + i c/o, x0 + (i+1) c/o)
    from its integral F (linear between integer knots)."""
    v = np.moveaxis(v, axis, 0)
    n = v.shape[0]
    F = np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v, axis=0)], axis=0)

    def integral(x):
        k = np.minimum(np.floor(x).astype(np.int64), n - 1)
        t = (x - k).reshape((-1,) + (1,) * (v.ndim - 1))
        return F[k] + t * (F[k + 1] - F[k])

    i = np.arange(o, dtype=np.float64)
    a = x0 + i * c / o
    b = x0 + (i + 1) * c / o
    assert a[0] >= 0 and b[-1] <= n + 1e-9, "reference only handles windows inside the image"
    out = (integral(b) - integral(a)) / (c / o)
    return np.moveaxis(out, 0, axis)


def bilinear_axis(v, axis, x0, c, o):
    v = np.moveaxis(v, axis, 0)
    n = v.shape[0]
    s = x0 + (np.arange(o) + 0.5) * (c / o) - 0.5
    s = np.clip(s, 0, n - 1)
    j0 = np.floor(s).astype(np.int64)
    j1 = np.minimum(j0 + 1, n - 1)
    t = (s - j0).reshape((-1,) + (1,) * (v.ndim - 1))
    out = v[j0] * (1 - t) + v[j1] * t
    return np.moveaxis(out, 0, axis)


def reference_resize_crop(rgb, S):
    h, w = rgb.shape[:2]
    short = min(w, h)
    x0, y0 = (w - short) / 2.0, (h - short) / 2.0
    v = rgb.astype(np.float64)
    f = area_axis if short > S else bilinear_axis
    v = f(v, 1, x0, short, S)
    v = f(v, 0, y0, short, S)
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


