"""Where a training step of the throughput benchmark's network spends its time (torch.profiler, CPU).

    python benchmarks/profile_train_step.py [--model ours|diffusers] [--precision fp32|bf16] [--steps 3]

The step is exactly the one `diffuse bench throughput` times (diffuse.bench.train_step: batch 128, forward,
backward, fused AdamW, EMA). Prints the top operators by self time, the convolutions' share, and the GFLOP/s the
convolutions reach (model FLOPs, 3x forward, all attributed to them: an upper bound).
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from diffuse.bench import model_stats, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ours", choices=("ours", "diffusers"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    step = train_step(args.model, args.precision)
    step(), step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    ev = prof.key_averages()
    print(ev.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))
    total = sum(e.self_cpu_time_total for e in ev)  # us
    conv = sum(e.self_cpu_time_total for e in ev if "convolution" in e.key)
    gflop = 3 * model_stats(args.model)["gflop_per_img"] * 128 * args.steps
    print(f"convolutions: {100 * conv / total:.1f}% of self time; {gflop / (conv / 1e6):.0f} GFLOP/s if all model FLOPs "
          f"were theirs; the rest of the step: {100 * (1 - conv / total):.1f}% (removing it all: {total / conv:.2f}x)")


if __name__ == "__main__":
    main()
