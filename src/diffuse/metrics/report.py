"""Text report of `diffuse eval` results."""

from __future__ import annotations


def format_eval(res: dict) -> str:
    """The human-readable report of an `evaluate` result."""
    out: list[str] = []
    if "fid" in res:
        out.append(f"FID {res['fid']:.2f} at n={res['n']} (real training images at the same n: {res['fid_real']:.2f})")
        if "kid" in res:
            out.append(f"KID {res['kid']:.5f} +- {res['kid_std']:.5f} (real: {res['kid_real']:.5f})")
        if "precision" in res:
            out.append(f"precision {res['precision']:.3f}, recall {res['recall']:.3f} (real: {res['precision_real']:.3f}, "
                       f"{res['recall_real']:.3f})")
        out.append(f"  features: {res['feature_net']}; reference: {res['reference']}")
        out.append(f"  domain classifier test accuracy: {res['classifier_test_accuracy']:.1%}")
        if "label_accuracy" in res:
            out.append(f"  label accuracy of samples: {res['label_accuracy']:.1%}")
        out.append(f"  sampler {res['sample_sampler']}, {res['sample_steps']} steps, {res['sample_schedule']} schedule, "
                   f"guidance {res['sample_guidance']}, seed {res['sample_seed']}; sampling took {res['sample_seconds']:.1f} s")
        out.append(f"  note: {res['note']}")
    if "cas_synthetic" in res:
        sm = res.get("cas_sampling", {})
        out.append(f"CAS (Ravuri & Vinyals 2019), {res['cas_per_class']} images per class as `diffuse synth` makes them "
                   f"({sm.get('sampler')}, {sm.get('steps')} steps, guidance {sm.get('guidance')}), same classifier and steps for each row:")
        out.append(f"  trained on synthetic, tested on real: {res['cas_synthetic']:.1%}  (real, equal n: {res['cas_real_equal_n']:.1%}; "
                   f"ratio {res['cas_ratio']:.2f})")
        out.append(f"  {res['scarce_per_class']} real per class: {res['scarce_real']:.1%}; plus the synthetic set: "
                   f"{res['scarce_real_plus_synthetic']:.1%}")
    if "bpd_vlb" in res:
        out.append(f"bits/dim on {res['bpd_n']} test images: VLB {res['bpd_vlb']:.3f} +- {res['bpd_vlb_sem']:.3f} "
                   f"({res['bpd_vlb_steps']} steps, an upper bound); probability-flow ODE {res['bpd_ode']:.3f} +- "
                   f"{res['bpd_ode_sem']:.3f} ({res['bpd_ode_steps']} Heun steps, Hutchinson, dequantized)")
    return "\n".join(out)
