"""Hypothesis strategies for hostile files: images, .npz arrays, safetensors, config.json and captions files."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from PIL import Image

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.sampled_from([0, -1, 1, 3, 10**9, 2**40]),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.just([]), st.just({}),
                        st.lists(st.integers(-3, 100), max_size=4), st.just({"x": 1}))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@st.composite
def image_files(draw, size: int = 8) -> tuple[bytes, str]:
    """(bytes, suffix): images of every mode, odd sizes, truncations, bombs and non-images."""
    kind = draw(st.sampled_from(["mode", "mode", "mode", "truncated", "bomb", "garbage", "empty", "svg"]))
    if kind == "bomb":
        return png_bomb(draw(st.sampled_from([20000, 100000, 2**31 - 1])), draw(st.sampled_from([20000, 100000, 1]))), ".png"
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=64)), draw(st.sampled_from([".png", ".jpg", ".npz"]))
    if kind == "empty":
        return b"", ".png"
    if kind == "svg":
        return b"<svg xmlns='http://www.w3.org/2000/svg'/>", ".png"
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "CMYK", "I;16", "I", "F", "1", "LA"]))
    w = draw(st.sampled_from([size, size, 1, size + 1, 3 * size]))
    h = draw(st.sampled_from([size, size, 1, size - 1]))
    arr = np.random.default_rng(draw(st.integers(0, 9))).integers(0, 255, (h, w, 4), dtype=np.uint8)
    if mode in ("I;16", "I", "F"):  # 16-bit, 32-bit integer and float images from their own arrays
        wide = arr[..., 0].astype(np.uint16) * 257
        im = Image.fromarray({"I;16": wide, "I": wide.astype(np.int32), "F": wide.astype(np.float32)}[mode])
    else:
        im = Image.fromarray(arr, "RGBA").convert("RGB").convert(mode)
    if mode == "F" and draw(st.booleans()):
        a = np.asarray(im, dtype=np.float32).copy()
        a[0, 0] = np.nan
        im = Image.fromarray(a, "F")
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, draw(st.sampled_from(["PNG", "PNG", "TIFF", "BMP"])))
    if fmt == "BMP" and mode not in ("L", "RGB", "P", "1"):
        fmt = "PNG"
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: draw(st.integers(1, max(1, len(data) - 1)))]
    return data, {"JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}.get(fmt, ".png")


@st.composite
def npz_files(draw, size: int = 8) -> bytes:
    """.npz archives: every dtype, rank and label form, object arrays, empty and corrupt archives."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([b"", b"PK\x03\x04garbage", b"\x93NUMPY", bytes(100)]))
    if draw(st.integers(0, 2)) == 0:  # a valid archive, so the accepting path is exercised too
        n = draw(st.sampled_from([1, 2, 20]))
        shape = (n, size, size) if draw(st.booleans()) else (n, size, size, 1)
        rng = np.random.default_rng(n)
        images = rng.integers(0, 256, shape).astype(np.uint8) if draw(st.booleans()) else rng.random(shape).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, images=images, **({"labels": np.arange(n) % 3} if draw(st.booleans()) else {}))
        return buf.getvalue()
    rank = draw(st.sampled_from([3, 3, 4, 4, 1, 2, 5]))
    n = draw(st.sampled_from([0, 1, 2, 20, 40]))
    shape = [n] + [draw(st.sampled_from([size, size, 1, 3, size + 1])) for _ in range(rank - 1)]
    dtype = draw(st.sampled_from(["uint8", "uint8", "float32", "float64", "int16", "int64", "bool", "complex64", "U3", "object", "float16"]))
    rng = np.random.default_rng(draw(st.integers(0, 9)))
    if dtype == "object":
        images = np.empty(shape, dtype=object)
    elif dtype == "U3":
        images = np.full(shape, "abc")
    else:
        scale = {"uint8": 255, "int16": draw(st.sampled_from([255, 30000, -5])), "int64": 255, "bool": 1}.get(dtype, 1)
        images = (rng.random(shape) * scale).astype(dtype)
        if dtype.startswith("float") and images.size and draw(st.booleans()):
            images.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    arrays = {draw(st.sampled_from(["images", "images", "images", "pictures"])): images}
    lab = draw(st.sampled_from(["none", "ok", "float", "negative", "huge", "2d", "short", "strings"]))
    if lab != "none":
        arrays["labels"] = {"ok": np.arange(n) % 3, "float": np.arange(n) * 0.5, "negative": -np.arange(n) - 1,
                            "huge": np.full(n, 10**15), "2d": np.zeros((n, 2), int), "short": np.arange(max(n - 1, 0)),
                            "strings": np.array(["a"] * n)}[lab]
    if draw(st.booleans()):
        arrays["class_names"] = draw(st.sampled_from([np.array("one"), np.array(["a", "b"]), np.arange(3), np.empty(2, object)]))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@st.composite
def safetensors_mutations(draw, good: bytes) -> bytes:
    """A weights file broken in one way: truncated, a header length claiming gigabytes, a corrupt or foreign
    header, wrong dtypes or shapes, missing or extra tensors, NaN or inf values, bad metadata."""
    import torch
    from safetensors.torch import load, save

    how = draw(st.sampled_from(["truncate", "huge_header", "header_bytes", "dtype", "shape", "drop", "extra", "nan", "inf",
                                "meta_not_dict", "meta_bad_json", "meta_fingerprint", "empty", "random"]))
    if how == "truncate":
        return good[: draw(st.integers(0, len(good) - 1))]
    if how == "huge_header":
        return struct.pack("<Q", draw(st.sampled_from([2**33, 2**63 - 1, len(good)]))) + good[8:]
    if how == "header_bytes":
        n = struct.unpack("<Q", good[:8])[0]
        pos = draw(st.integers(8, 8 + n - 1))
        return good[:pos] + bytes([draw(st.integers(0, 255))]) + good[pos + 1 :]
    if how == "empty":
        return b""
    if how == "random":
        return draw(st.binary(min_size=8, max_size=200))
    header = json.loads(good[8 : 8 + struct.unpack("<Q", good[:8])[0]])
    meta = header.get("__metadata__", {})
    tensors = load(good)
    keys = sorted(tensors)
    k = draw(st.sampled_from(keys))
    if how == "dtype":
        tensors[k] = tensors[k].to(draw(st.sampled_from([torch.float16, torch.int32, torch.bool, torch.float64, torch.uint8])))
    elif how == "shape":
        t = tensors[k]
        tensors[k] = t.reshape(-1) if t.dim() > 1 else torch.cat([t.reshape(-1), t.reshape(-1)])
    elif how == "drop":
        del tensors[k]
    elif how == "extra":
        tensors["surprise.weight"] = torch.zeros(3)
    elif how in ("nan", "inf"):
        t = tensors[k].clone().float().reshape(-1)
        t[:1] = float("nan") if how == "nan" else float("inf")
        tensors[k] = t.reshape(tensors[k].shape)
    elif how == "meta_not_dict":
        meta = {"json": draw(st.sampled_from(["[1, 2]", "3", "null", '"s"']))}
    elif how == "meta_bad_json":
        meta = {"json": "{not json"}
    elif how == "meta_fingerprint":
        m = json.loads(meta.get("json", "{}"))
        m.update(fingerprint="0" * 16, step=draw(JSON_VALUES))
        meta = {"json": json.dumps(m)}
    return save({kk: v.contiguous() for kk, v in tensors.items()}, metadata=meta)


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


@st.composite
def config_mutations(draw, good: dict) -> bytes:
    """config.json edited: a field deleted, retyped or set to an odd value, an unknown key, another version's format,
    a section replaced, or the file made invalid JSON, deeply nested or non-UTF-8."""
    how = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "format", "section", "bad_json", "nested", "latin1"]))
    if how == "bad_json":
        return json.dumps(good).encode()[: draw(st.integers(0, 200))]
    if how == "nested":
        return b'{"format": "diffuse-run/1", "model": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    if how == "latin1":
        return json.dumps(good).replace("digits", "d\u00efgits").encode("latin-1")
    cfg = json.loads(json.dumps(good))
    paths = sorted(_paths(cfg))
    path = draw(st.sampled_from(paths))
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    if how == "set":
        parent[path[-1]] = draw(JSON_VALUES)
    elif how == "delete":
        del parent[path[-1]]
    elif how == "unknown":
        parent["from_the_future"] = 1 if isinstance(parent, dict) else None
    elif how == "format":
        cfg["format"] = draw(st.sampled_from(["diffuse-run/2", "diffuse-run/0", 1, None]))
    elif how == "section":
        cfg[draw(st.sampled_from(["model", "train"]))] = draw(JSON_VALUES)
    return json.dumps(cfg).encode()


@st.composite
def captions_files(draw, files: list[str]) -> tuple[bytes, str]:
    """Captions CSV or JSONL: bad encodings, missing columns, huge lines, non-object lines, NUL bytes."""
    kind = draw(st.sampled_from(["csv", "csv", "jsonl", "jsonl"]))
    how = draw(st.sampled_from(["ok", "missing_column", "latin1", "utf16", "huge", "nul", "non_object", "nested", "missing_file", "empty"]))
    rows = [(f, draw(st.sampled_from(["a dark shoe", "x" * 3, "", " "]))) for f in files]
    if kind == "csv":
        head = "file,text" if how != "missing_column" else "file,caption"
        text = head + "\n" + "\n".join(f"{f},{t}" for f, t in rows) + "\n"
    else:
        text = "\n".join(json.dumps({"file": f, "text": t} if how != "missing_column" else {"file": f}) for f, t in rows) + "\n"
    if how == "huge":
        text += (f"{files[0]}," if kind == "csv" else '{"file": "a", "text": "') + "y" * 300_000 + ("\n" if kind == "csv" else '"}\n')
    elif how == "nul":
        text = text.replace("a", "a\x00", 1)
    elif how == "non_object":
        text += draw(st.sampled_from(["[1, 2]\n", "3\n", "null\n", '"s"\n']))
    elif how == "nested":
        text += "[" * 50000 + "]" * 50000 + "\n"
    elif how == "missing_file":
        text = text.replace(files[0], "nope.png")
    elif how == "empty":
        text = ""
    data = text.encode("utf-16") if how == "utf16" else text.encode("utf-8")
    if how == "latin1":
        data = text.replace("dark", "d\u00e4rk").encode("latin-1")
    return data, ".csv" if kind == "csv" else ".jsonl"
