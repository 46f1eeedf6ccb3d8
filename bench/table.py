#!/usr/bin/python3
"""Formats bench/run_forum.sh's JSON lines as the markdown tables of bench/RESULTS.md.

    /usr/bin/python3 bench/table.py bench/results.jsonl

Pairs each tapegrad result with the PyTorch result of the same configuration (the peer
adds a "framework" key); the last line of each wins when a configuration was rerun.
"""
import json
import sys


def key(r, conv=None):
    """A configuration; tapegrad's rows also by --conv (lines before it existed: gemm)."""
    c = conv or r.get("conv", "gemm")
    if r["command"] == "forum":
        return ("forum", r["model"], r["loss"], r["optim"], r["size"], r["batch"], c)
    return ("mobilenet", r["groups"], r["size"], r["batch"], r.get("train", False), c)


def peer(pt, k):
    """PyTorch's result for tapegrad's configuration k (the peer has one algorithm)."""
    return pt.get(k[:-1] + ("gemm",))


def model_name(k):
    return k[1] + (" (Winograd)" if k[-1] == "winograd" else "")


def load(path):
    tg, pt = {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            (pt if str(r.get("framework", "")).startswith("pytorch") else tg)[key(r)] = r
    return tg, pt


def mib(b):
    return f"{b / 2**20:,.0f}" if b else "–"


def secs(r, field):
    v = r.get(field) if r else None
    return f"{v:.3f}" if v is not None else "–"


def main(path):
    tg, pt = load(path)
    print("### Forum experiment 1 (CE + SGD, batch 1, C = 256, 2 threads): full step\n")
    print("| size | model | tapegrad step s (min–max) | PyTorch step s | tapegrad / PyTorch "
          "| tapegrad GFLOP/s | % of SGEMM peak | roofline ratio | tapegrad RSS MiB | PyTorch RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    speed = {}
    for k in sorted(k for k in tg if k[0] == "forum"):
        t, p = tg[k], peer(pt, k)
        ratio = f"{t['step_s'] / p['step_s']:.2f}×" if p else "–"
        peak = t.get("sgemm_peak_gflops")
        share = f"{100 * t['gflops'] / peak:.0f}%" if peak else "–"
        print(f"| {k[4]}² | {model_name(k)} | {t['step_s']:.3f} ({t['step_min_s']:.3f}–{t['step_max_s']:.3f}) "
              f"| {secs(p, 'step_s')} | {ratio} | {t['gflops']:.1f} | {share} "
              f"| {t['roofline_ratio']:.2f} | {mib(t['rss_bytes'])} | {mib(p['rss_bytes'] if p else 0)} |")
        speed.setdefault(k[4], {})[model_name(k)] = (t, p)
    print("\n### Separable over dense speedup (full step)\n")
    print("| size | tapegrad (GEMM dense) | PyTorch | FLOP ratio | tapegrad, Winograd dense |")
    print("|---|---|---|---|---|")
    for size, d in sorted(speed.items()):
        if "dense" in d and "separable" in d:
            (td, pd), (ts, ps) = d["dense"], d["separable"]
            pr = f"{pd['step_s'] / ps['step_s']:.2f}×" if pd and ps else "–"
            tw = d.get("dense (Winograd)", (None, None))[0]
            wr = f"{tw['step_s'] / ts['step_s']:.2f}×" if tw else "–"
            print(f"| {size}² | {td['step_s'] / ts['step_s']:.2f}× | {pr} "
                  f"| {td['flops'] / ts['flops']:.2f}× | {wr} |")
    rows = sorted(k for k in tg if k[0] == "mobilenet")
    if rows:
        print("\n### Forum experiment 2: MobileNet v1 forward, 224², 2 threads\n")
        print("| groups | batch | tapegrad fwd s (min–max) | PyTorch fwd s | tapegrad / PyTorch "
              "| tapegrad GFLOP/s |")
        print("|---|---|---|---|---|---|")
        for k in rows:
            t, p = tg[k], peer(pt, k)
            ratio = f"{t['fwd_s'] / p['fwd_s']:.2f}×" if p else "–"
            groups = k[1] + (" (Winograd)" if k[-1] == "winograd" else "")
            print(f"| {groups} | {k[3]} | {t['fwd_s']:.4f} ({t['fwd_min_s']:.4f}–{t['fwd_max_s']:.4f}) "
                  f"| {secs(p, 'fwd_s')} | {ratio} | {t['gflops']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results.jsonl")
