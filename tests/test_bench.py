"""The throughput benchmark compares like with like and reports what it measured."""

import pytest

from diffuse import bench

pytest.importorskip("diffusers")


def test_same_shape_as_diffusers():
    ours, theirs = bench.model_stats("ours"), bench.model_stats("diffusers")
    assert ours["gflop_per_img"] == pytest.approx(theirs["gflop_per_img"], rel=0.03)
    assert ours["params"] == pytest.approx(theirs["params"], rel=0.1)


def test_table_reports_ratios_and_peak_share():
    rows = []
    for m, speed in (("ours", 2.0), ("diffusers", 1.0)):
        for p in ("fp32", "bf16"):
            rows += [{"model": m, "precision": p, "what": "train", "img_per_s": 100 * speed, "peak_rss_mb": 10},
                     {"model": m, "precision": p, "what": "infer", "img_per_s": 300 * speed, "peak_rss_mb": 10},
                     {"model": m, "precision": p, "what": "sample", "seconds_64_at_50_nfe": 10 / speed, "peak_rss_mb": 10}]
    res = {"torch": "x", "threads": 2, "amx": False, "peak_gflops": {"fp32": 300.0, "bf16": 150.0},
           "models": {"ours": {"params": 1e6, "gflop_per_img": 1.0}, "diffusers": {"params": 1e6, "gflop_per_img": 1.0}}, "rows": rows}
    t = bench.table(res)
    assert "ours fp32 / diffusers fp32: train 2.00x, infer 2.00x, sampling 2.00x faster" in t
    assert "| ours | fp32 | 200 | 600 | 200% / 400% |" in t  # 3 x 1 GFLOP x 200 img/s against the measured peaks
