#!/usr/bin/python3
"""Image decoding and the data-set resize against independent references.

Runs test/tools/resize_tool (found through $RESIZE_TOOL, else argv[1],
else $TEST_BIN_DIR/resize_tool) on generated JPEG and PNG files and checks:

  decoding  PNG pixels equal the ones written (grey -> R=G=B, alpha dropped,
            palette looked up, 16-bit -> high byte); JPEG pixels equal PIL's
            decode (both use the system libjpeg-turbo, so they should be
            identical; up to 1 level is allowed for the CMYK -> RGB rounding);
  resize    aes_image_resize_crop against a float64 numpy implementation of
            its definition written here from scratch (area means from
            cumulative sums, bilinear by gathering), max abs diff <= 1;
            upscales against torch.nn.functional.interpolate (bilinear,
            align_corners=False) on the centre crop, and exact integer
            reductions against PIL's Image.BOX, max abs diff <= 1. (torch
            clamps samples to the crop's edge while the resize reads the
            pixels just outside the window, as resize-then-crop would; so
            square images are compared everywhere and others where the
            sample lies inside the window);
  errors    truncated and foreign files make the tool fail with the
            decoder's one-line reason.

The resize definition (see src/data/image.c): short = min(w, h); window
x0 = (w - short) / 2, y0 = (h - short) / 2, side short (half-pixel offsets
when w - h is odd); per axis, if short > S each output pixel is the mean of
the source over [x0 + i*short/S, x0 + (i+1)*short/S) (pixel j covers
[j, j+1)), otherwise bilinear at x0 + (i + 0.5)*short/S - 0.5 clamped to
[0, n-1]; values rounded half up and clamped to [0, 255].
"""
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refimage import reference_resize_crop  # noqa: E402

passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)


def find_tool():
    cands = [os.environ.get("RESIZE_TOOL")]
    if len(sys.argv) > 1:
        cands.append(sys.argv[1])
    if os.environ.get("TEST_BIN_DIR"):
        cands.append(os.path.join(os.environ["TEST_BIN_DIR"], "resize_tool"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    sys.exit("test_image_reference: resize_tool not found (set RESIZE_TOOL or pass its path)")


TOOL = find_tool()


def run_tool(src, dst, S):
    return subprocess.run([TOOL, src, dst, str(S)], capture_output=True, text=True)


def tool_image(src, dst, S):
    r = run_tool(src, dst, S)
    if r.returncode != 0:
        raise RuntimeError("resize_tool %s %d failed: %s" % (src, S, r.stderr.strip()))
    with Image.open(dst) as im:
        check(im.mode == "RGB", "%s: tool wrote mode %s" % (dst, im.mode))
        return np.asarray(im, dtype=np.uint8)


def maxdiff(a, b):
    if a.shape != b.shape:
        return 999
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))


# ---- inputs ------------------------------------------------------------------

rng = np.random.default_rng(20240607)


def content(h, w, c=3):
    """Noise over smooth structure: hard for both filters and JPEG."""
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 90 * np.sin(x[..., None] * (0.07 + 0.05 * np.arange(c)) + y[..., None] * 0.05)
    noise = rng.normal(0, 40, size=(h, w, c))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def write_png_raw(path, rows_bytes, w, h, depth, ctype, plte=None):
    """Minimal PNG writer (filter 0 on every row) for what PIL cannot write."""
    raw = b"".join(b"\x00" + r for r in rows_bytes)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    out += png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def main():
    tmp = tempfile.TemporaryDirectory(prefix="aesnet_img_ref_")
    d = tmp.name
    cases = []  # (name, path, expected decoded RGB, exact decode?, sizes S)

    def add_png_rgb(name, h, w, sizes):
        rgb = content(h, w)
        p = os.path.join(d, name + ".png")
        Image.fromarray(rgb, "RGB").save(p)
        cases.append((name, p, rgb, True, sizes))

    add_png_rgb("rgb_257x131", 131, 257, [64, 100, 131, 200])
    add_png_rgb("rgb_64x300", 300, 64, [48, 64, 96])
    add_png_rgb("rgb_31x17", 17, 31, [17, 64, 100])
    add_png_rgb("rgb_500x500", 500, 500, [224, 250, 333])
    add_png_rgb("rgb_600x300", 300, 600, [150, 224])
    add_png_rgb("rgb_40x40", 40, 40, [100, 40])
    add_png_rgb("rgb_23x23", 23, 23, [64, 224])

    g = content(90, 120, 1)[..., 0]
    p = os.path.join(d, "grey_120x90.png")
    Image.fromarray(g, "L").save(p)
    cases.append(("grey_120x90", p, np.repeat(g[..., None], 3, axis=2), True, [56, 90, 150]))

    rgba = content(121, 90, 4)
    p = os.path.join(d, "rgba_90x121.png")
    Image.fromarray(rgba, "RGBA").save(p)
    cases.append(("rgba_90x121", p, rgba[..., :3].copy(), True, [45, 64]))

    la = content(33, 70, 2)
    p = os.path.join(d, "greyalpha_70x33.png")
    Image.fromarray(la, "LA").save(p)
    cases.append(("greyalpha_70x33", p, np.repeat(la[..., :1], 3, axis=2), True, [20]))

    idx = rng.integers(0, 200, size=(77, 50), dtype=np.uint8)
    pal = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    p = os.path.join(d, "palette_50x77.png")
    write_png_raw(p, [r.tobytes() for r in idx], 50, 77, 8, 3, plte=pal.tobytes())
    cases.append(("palette_50x77", p, pal[idx], True, [32]))

    rgb16 = rng.integers(0, 65536, size=(45, 61, 3), dtype=np.uint16)
    p = os.path.join(d, "rgb16_61x45.png")
    write_png_raw(p, [r.astype(">u2").tobytes() for r in rgb16], 61, 45, 16, 2)
    cases.append(("rgb16_61x45", p, (rgb16 >> 8).astype(np.uint8), True, [30]))

    g16 = rng.integers(0, 65536, size=(40, 52), dtype=np.uint16)
    p = os.path.join(d, "grey16_52x40.png")
    write_png_raw(p, [r.astype(">u2").tobytes() for r in g16], 52, 40, 16, 0)
    cases.append(("grey16_52x40", p, np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, axis=2),
                  True, [25]))

    def add_jpeg(name, arr, mode, sizes, **kw):
        p = os.path.join(d, name + ".jpg")
        Image.fromarray(arr, mode).save(p, quality=95, **kw)
        with Image.open(p) as im:
            ref = np.asarray(im.convert("RGB"))
        cases.append((name, p, ref, mode != "CMYK", sizes))

    add_jpeg("jpeg_300x200", content(200, 300), "RGB", [128, 200, 224])
    add_jpeg("jpeg_333x222", content(222, 333), "RGB", [224, 111])
    add_jpeg("jpeg_420_257x131", content(131, 257), "RGB", [64], subsampling=2)
    add_jpeg("jpeg_grey_64x300", content(300, 64, 1)[..., 0], "L", [48])
    add_jpeg("jpeg_cmyk_80x60", content(60, 80, 4), "CMYK", [40])
    prog = content(150, 160)
    add_jpeg("jpeg_progressive_160x150", prog, "RGB", [64], progressive=True)

    ran = {"torch": 0, "box": 0}
    for name, path, want, exact, sizes in cases:
        try:
            got = tool_image(path, os.path.join(d, name + "_dec.png"), 0)
        except RuntimeError as e:
            check(False, str(e))
            continue
        diff = maxdiff(got, want)
        tol = 0 if exact else 1
        check(diff <= tol, "%s: decoded pixels differ from the reference by %d (tolerance %d)"
              % (name, diff, tol))
        for S in sizes:
            try:
                out = tool_image(path, os.path.join(d, "%s_%d.png" % (name, S)), S)
            except RuntimeError as e:
                check(False, str(e))
                continue
            # The reference resizes the reference decode, so a decoder
            # difference cannot hide a resize error or the other way round.
            ref = reference_resize_crop(want, S)
            diff = maxdiff(out, ref)
            check(diff <= 1, "%s -> %d: max diff %d against the numpy reference" % (name, S, diff))

            h, w = want.shape[:2]
            short = min(h, w)
            if (w - short) % 2 or (h - short) % 2:
                continue  # half-pixel window: no whole-pixel crop for torch or PIL
            x0, y0 = (w - short) // 2, (h - short) // 2
            crop = want[y0:y0 + short, x0:x0 + short]
            if short <= S:
                t = torch.from_numpy(crop.astype(np.float64)).permute(2, 0, 1)[None]
                r = torch.nn.functional.interpolate(t, size=(S, S), mode="bilinear",
                                                    align_corners=False)
                r = np.clip(np.floor(r[0].permute(1, 2, 0).numpy() + 0.5), 0, 255).astype(np.uint8)
                # torch sees only the crop and clamps samples to its edge; the
                # resize samples the whole image, as resizing first and then
                # cropping would. They agree wherever the sample position lies
                # inside the window, which on a square image is everywhere.
                pos = (np.arange(S) + 0.5) * short / S - 0.5
                inside = np.nonzero((pos >= 0) & (pos <= short - 1))[0]
                keep_y = inside if h > short else np.arange(S)
                keep_x = inside if w > short else np.arange(S)
                sub = np.ix_(keep_y, keep_x)
                diff = maxdiff(out[sub], r[sub])
                check(diff <= 1, "%s -> %d: max diff %d against torch bilinear (%d x %d compared)"
                      % (name, S, diff, len(keep_y), len(keep_x)))
                ran["torch"] += 1
            elif short % S == 0:
                r = np.asarray(Image.fromarray(np.ascontiguousarray(crop), "RGB").resize(
                    (S, S), Image.BOX))
                diff = maxdiff(out, r)
                check(diff <= 1, "%s -> %d: max diff %d against PIL BOX" % (name, S, diff))
                ran["box"] += 1

    # Every comparison family must actually have run.
    for k, v in ran.items():
        check(v >= 2, "only %d %s comparisons ran" % (v, k))

    # ---- errors ---------------------------------------------------------------
    src = cases[0][1]
    full_jpg = [c[1] for c in cases if c[0] == "jpeg_300x200"][0]
    bad = {
        "half.jpg": (open(full_jpg, "rb").read()[: os.path.getsize(full_jpg) // 2], "truncated JPEG"),
        "half.png": (open(src, "rb").read()[: os.path.getsize(src) // 2], "truncated PNG"),
        "garbage.png": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes().replace(b"\x89", b"\x00")
                        .replace(b"\xff", b"\x00"), "not a JPEG or PNG file"),
        "empty.jpg": (b"", "empty file"),
        "corrupt.jpg": (b"\xff\xd8\xff" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
                        "corrupt JPEG: "),
    }
    for fname, (data, msg) in bad.items():
        p = os.path.join(d, fname)
        with open(p, "wb") as f:
            f.write(data)
        r = run_tool(p, os.path.join(d, "never.png"), 64)
        want = "resize_tool: %s: %s" % (p, msg)
        check(r.returncode == 1 and r.stderr.startswith(want),
              "%s: expected exit 1 and '%s', got %d '%s'" % (fname, want, r.returncode, r.stderr.strip()))
        check(not os.path.exists(os.path.join(d, "never.png")), "%s: output written" % fname)

    tmp.cleanup()
    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
