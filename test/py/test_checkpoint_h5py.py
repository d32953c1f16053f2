#!/usr/bin/python3
"""A checkpoint as an analysis script sees it: h5py against docs/checkpoint-format.md.

Runs test/tools/ckpt_tool ($TEST_BIN_DIR/ckpt_tool, or argv[1]) to save a
checkpoint of a small table into a temporary directory, then checks with
h5py (Debian's python3-h5py, not our HDF5 wrappers) that:

  - every documented root attribute is there with its type and value
    (strings UTF-8 variable-length, integers int64, `created` UTC ISO-8601);
  - /config is one variable-length UTF-8 string holding the config text;
  - /model/<path> is float32 of the tensor's shape with attribute
    `trainable`, and its values follow the tool's formula
    (tensor k, element i: (k + 1) + i / 1024), buffers included;
  - /optim/m/<path> and /optim/v/<path> exist exactly for the trainable
    tensors, holding param / 4 and param / 8;
  - nothing else is in the file;
  - checkpoints/latest is a relative link that resolves to the file.
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

# The tool's table (test/tools/ckpt_tool.c), in its order.
TENSORS = [
    ("image/stage1/block0/conv1/weight", 1, (8, 4, 3, 3)),
    ("image/stage1/block0/bn1/weight", 1, (8,)),
    ("image/stage1/block0/bn1/bias", 1, (8,)),
    ("heads/color/image_proj", 1, (16, 8)),
    ("text/positional", 1, (2, 5, 6)),
    ("logit_scale", 1, (1,)),
    ("image/stage1/block0/bn1/running_mean", 0, (8,)),
    ("image/stage1/block0/bn1/running_var", 0, (8,)),
]
META = {"step": 42, "epoch": 2, "cursor": 42 * 64, "world_size": 2, "nonfinite": 1, "seed": 7, "tokenizer_hash": 99}
CONFIG = 'seed = 7;\nmodel = { backbone = "resnet18"; };\n'
INT_ATTRS = ["format_version", "step", "epoch", "cursor", "world_size", "nonfinite", "seed", "tokenizer_hash",
             "n_tensors", "n_trainable_floats"]
STR_ATTRS = ["format", "created", "code_version", "build_type", "build_flags", "library_versions"]


def find_tool():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.environ.get("TEST_BIN_DIR", "build/test"), "ckpt_tool")


def is_utf8_vlen(dtype):
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.encoding == "utf-8" and info.length is None


def attr_type(obj, name):
    return obj.attrs.get_id(name).dtype


def main():
    tool = find_tool()
    with tempfile.TemporaryDirectory(prefix="aesnet_ckpt_py_") as out:
        r = subprocess.run([tool, out], capture_output=True, text=True)
        check(r.returncode == 0, f"ckpt_tool exit {r.returncode}: {r.stderr}")
        if r.returncode != 0:
            return finish()
        lines = r.stdout.splitlines()
        path = lines[0].split(" ", 1)[1]
        check(path == os.path.join(out, "checkpoints", "step_00000042.h5"), f"path {path}")
        printed = [ln.split() for ln in lines if ln.startswith("tensor ")]
        check([(p[1], int(p[2]), tuple(int(x) for x in p[3].split("x"))) for p in printed]
              == TENSORS, "the tool's table matches this test's")

        with h5py.File(path, "r") as f:
            a = f.attrs
            for name in INT_ATTRS:
                check(name in a and attr_type(f, name) == np.dtype("<i8"),
                      f"root attribute {name} is int64")
            for name in STR_ATTRS:
                check(name in a and is_utf8_vlen(attr_type(f, name)),
                      f"root attribute {name} is a UTF-8 string")
            check(set(a.keys()) == set(INT_ATTRS + STR_ATTRS),
                  f"no undocumented root attributes: {sorted(a.keys())}")
            check(a["format"] == "aesnet-checkpoint", "format")
            check(a["format_version"] == 1, "format_version")
            for k, v in META.items():
                check(a[k] == v, f"{k} = {a[k]}, expected {v}")
            check(a["n_tensors"] == len(TENSORS), "n_tensors")
            n_tr = sum(int(np.prod(s)) for _, t, s in TENSORS if t)
            check(a["n_trainable_floats"] == n_tr, f"n_trainable_floats {a['n_trainable_floats']}")
            check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a["created"]) is not None,
                  f"created {a['created']}")
            check(re.fullmatch(r"aesnet \S+ \(git \S+\)", a["code_version"]) is not None,
                  f"code_version {a['code_version']}")
            check(a["build_type"] != "", "build_type")
            libs = a["library_versions"]
            for lib in ("MPI: ", "HDF5: ", "libconfig: ", "BLAS: ", "CUDA: "):
                check(lib in libs, f"library_versions names {lib!r}: {libs}")
            check(re.search(r"HDF5: \d+\.\d+\.\d+;", libs) is not None, "HDF5 version")

            c = f["config"]
            check(c.shape == () and is_utf8_vlen(c.dtype), f"/config {c.shape} {c.dtype}")
            check(c[()].decode("utf-8") == CONFIG, "config text")

            seen = set()
            f.visititems(lambda n, o: seen.add(n) if isinstance(o, h5py.Dataset) else None)
            want = {"config"}
            for k, (name, trainable, shape) in enumerate(TENSORS):
                ref = ((k + 1) + np.arange(int(np.prod(shape)), dtype=np.float32) / 1024
                       ).astype(np.float32).reshape(shape)
                d = f.get("model/" + name)
                want.add("model/" + name)
                check(isinstance(d, h5py.Dataset), f"/model/{name} present")
                if not isinstance(d, h5py.Dataset):
                    continue
                check(d.dtype == np.dtype("<f4") and d.shape == shape,
                      f"/model/{name}: {d.dtype} {d.shape}")
                check(attr_type(d, "trainable") == np.dtype("<i8")
                      and d.attrs["trainable"] == trainable, f"/model/{name} trainable")
                check(np.array_equal(d[()], ref), f"/model/{name} values")
                for mom, div in (("m", 4), ("v", 8)):
                    p = f"optim/{mom}/{name}"
                    if trainable:
                        want.add(p)
                        e = f.get(p)
                        ok = (isinstance(e, h5py.Dataset) and e.dtype == np.dtype("<f4")
                              and e.shape == shape)
                        check(ok, f"/{p} float32 {shape}")
                        check(ok and np.array_equal(e[()], ref / np.float32(div)), f"/{p} values")
                    else:
                        check(p not in f, f"/{p}: no moments for a buffer")
            check(seen == want,
                  f"data sets: extra {sorted(seen - want)}, missing {sorted(want - seen)}")

        link = os.path.join(out, "checkpoints", "latest")
        check(os.path.islink(link) and os.readlink(link) == "step_00000042.h5",
              "latest is a relative link to step_00000042.h5")
        check(os.path.realpath(link) == os.path.realpath(path), "latest resolves to the file")
        with h5py.File(link, "r") as f:
            check(f.attrs["step"] == 42, "read through latest")
        left = sorted(os.listdir(os.path.join(out, "checkpoints")))
        check(left == ["latest", "step_00000042.h5"], f"nothing else left behind: {left}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
