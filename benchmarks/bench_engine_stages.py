"""Pipeline cuts inside the fully unrolled layers' adder graphs (``--engine-stages``): the
digits default CNN built for real boards with ``0`` and ``auto`` cuts, side by side in one run
(Yosys and nextpnr through YoWASP): the folding, the cuts per layer, LUT/FF, Fmax and its
fraction of the board's 16-bit adder figure, cycles and latency per image, images/s at Fmax.

    .venv/bin/python benchmarks/bench_engine_stages.py [--boards ulx3s_85f,icebreaker]
        [--stages 0,auto] [--fold auto] [--out bench_stages]

Measured (Yosys 0.70, nextpnr-ecp5 0.11, seed 1), the 8-bit digits default with conv1 fully
unrolled (``--fold conv1=16:9,conv2=1:4,fc=1:1 --boards ulx3s_85f``; conv1's graph is 6
adders deep, ``auto`` cuts it once)::

    board     | stages | cuts per layer       | LUT  | FF   | Fmax MHz | x adder16 | cycles | latency
    ulx3s_85f | 0      | conv1=0,conv2=0,fc=0 | 5549 | 2922 | 53.3     | 0.18      | 18432  | 19962
    ulx3s_85f | auto   | conv1=1,conv2=0,fc=0 | 5472 | 3795 | 52.6     | 0.18      | 18432  | 19963

(the model: 5,368 LUT both, 3,284 -> 4,244 FF; the latency is the replayed schedule's, counted
from the first input beat accepted, 11 cycles after reset here, as the simulation counts it).
The cut costs 873 flip-flops and one cycle of latency and does not move Fmax: both builds' critical path is conv2's folded engine (weight
ROM clk-to-q 5.8 ns -> MULT18X18D -> the adder tree into the sums register, 18.75 ns), not
conv1's graph. With the board-fit folding (``--fold auto``) no layer of the digits default is
fully unrolled on either board (ULX3S: conv1 16x1, conv2 8x16, fc 1x4; iCEBreaker: 1x1, 1x4,
1x1), so ``auto`` makes no cut and the design is the combinational one; an unrolled conv1
does not fit the iCEBreaker (model 4,514 LUT against its 3,696 budget).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.digits_default import quantized_default
from hwquant import hwq
from hwquant.boards import load_board
from hwquant.fpga_flow import build_for_board


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="ulx3s_85f,icebreaker")
    ap.add_argument("--stages", default="0,auto", help="engine-stage options to compare")
    ap.add_argument("--fold", default="auto")
    ap.add_argument("--network", default=None, metavar="NET.hwq",
                    help="the network to build (default: train and quantize the digits default)")
    ap.add_argument("--out", default=None, help="keep the builds here (default: temporary)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="hwquant-stages-"))
    work.mkdir(parents=True, exist_ok=True)

    if args.network:
        net = hwq.load(args.network)
    else:
        net = quantized_default(work)

    results = []
    for board_id in args.boards.split(","):
        board = load_board(board_id)
        for stages in args.stages.split(","):
            out = work / f"{board_id}-{stages}"
            t = time.monotonic()
            rep = build_for_board(net, board, out, fold=args.fold, require_timing=False,
                                  engine_stages=stages)
            pnr = rep["pnr"] or {}
            results.append({
                "board": board_id, "stages_option": stages, "fold": rep["fold"],
                "engine_stages": rep["engine_stages"], "lut": rep["synth"]["lut"],
                "ff": rep["synth"]["ff"], "fmax_mhz": pnr.get("fmax_mhz"),
                "fmax_fraction_of_adder16": pnr.get("fmax_fraction_of_adder16"),
                "cycles": rep["cycles_per_inference"], "latency": rep["latency_cycles"],
                "images_per_s_at_fmax": rep["images_per_s"]["at_fmax"],
                "model_lut": rep["model"]["used"].get("lut"), "model_ff": rep["model"]["used"].get("ff"),
                "seconds": round(time.monotonic() - t, 1)})
            print(json.dumps(results[-1]), flush=True)

    print(f"\nengine stages on the digits default (builds in {work})")
    head = ("board", "stages", "cuts per layer", "LUT", "FF", "Fmax MHz", "x adder16",
            "cycles", "latency", "images/s")
    print("  " + " | ".join(head))
    for r in results:
        cuts = ",".join(f"{k}={v}" for k, v in r["engine_stages"].items())
        fmax = f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "-"
        frac = f"{r['fmax_fraction_of_adder16']:.2f}" if r["fmax_fraction_of_adder16"] else "-"
        ips = f"{r['images_per_s_at_fmax']:,.0f}" if r["images_per_s_at_fmax"] else "-"
        print(f"  {r['board']} | {r['stages_option']} | {cuts} | {r['lut']} | {r['ff']} | "
              f"{fmax} | {frac} | {r['cycles']} | {r['latency']} | {ips}")
    (work / "bench_engine_stages.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
