"""``hwquant`` command line: train, quantize, import, compare, sweep, compile, build, sim,
estimate, demo, boards, run.

Every command prints a human summary and, with ``--json PATH``, writes a machine-readable
report. Exit status: 0 ok, 1 verification mismatch or tool failure, 2 bad input (one
``error:`` line, nothing written; for ``build`` also a missing or failing tool, after the
tool's last log lines), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an
interrupted command removes its temporary outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from .errors import HwquantError, ToolFailedError, ToolNotFoundError, VerificationFailed

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
#: Exit status after SIGINT (Ctrl-C) and SIGTERM: 128 + the signal number, as shells report.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _LineTrackingStream:
    """``sys.stderr`` for the length of a command, remembering whether the last write ended a
    line (``\\n`` or ``\\r``). A signal can land in the middle of a progress bar's write; the
    message that follows then starts a line of its own instead of finishing the bar's."""

    def __init__(self, stream):
        self._stream = stream
        self.at_line_start = True

    def write(self, text):
        if not text:
            return self._stream.write(text)
        self.at_line_start = False  # stays so if the write is interrupted half-way
        written = self._stream.write(text)
        self.at_line_start = text[-1] in "\n\r"
        return written

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _start_message_line() -> None:
    """Close progress bars a signal left open and end a line the interrupted output left open."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        with contextlib.suppress(AttributeError):  # a bar interrupted while being built
            bar.close()
    if isinstance(sys.stderr, _LineTrackingStream) and not sys.stderr.at_line_start:
        print(file=sys.stderr, flush=True)


def _progress(prefix):
    start = time.monotonic()
    return lambda msg: _say(f"[{prefix} {time.monotonic() - start:6.1f}s] {msg}")


def _write_json(path, payload) -> None:
    if path:
        from .paths import write_text

        write_text(path, json.dumps(payload, indent=2, default=str), what="JSON report")


def _dataset(args):
    from .data import load_dataset
    return load_dataset(None if args.data else args.dataset, path=args.data)


def _dataset_info(args) -> dict:
    return {"path": os.path.abspath(args.data)} if args.data else {"name": args.dataset}


def _note(msg: str) -> None:
    """One line about an option hwquant had to adjust (never silently)."""
    _say(f"note: {msg}")


#: Training images used for calibration when ``--calib`` is not given (or all, if fewer).
DEFAULT_CALIB = 256


def _note_calibration(args, ds) -> int:
    """The calibration size; a ``--calib`` above the training set's size is said so."""
    n = len(ds.x_train)
    if args.calib is None:
        return DEFAULT_CALIB
    if args.calib > n:
        _note(f"--calib {args.calib} is more than the {n} training images; calibrating on "
              f"all {n}")
    return args.calib


def _note_vectors(args, report) -> None:
    """``--vectors`` above the test-set size: the simulation ran them all; say so."""
    ran = report.get("vectors") if args.command == "sim" else \
        (report.get("sim") or {}).get("vectors") if args.command == "demo" else None
    asked = getattr(args, "vectors", None)
    if isinstance(asked, int) and isinstance(ran, int) and ran < asked:
        _note(f"--vectors {asked} is more than the {ran} test images; simulated all {ran}")


# -- commands ------------------------------------------------------------------------------
def cmd_train(args) -> dict:
    import torch

    from .paths import atomic_file
    from .train import default_model, export_model, plot_learning_curves, train

    ds = _dataset(args)
    if args.baseline and not args.templates:
        raise HwquantError("--baseline trains an untemplated model beside a templated one; "
                           "it needs --templates T")
    curves_png = args.curves
    if curves_png is None and args.templates:
        curves_png = str(Path(args.output).with_suffix("")) + ".curves.png"
    if curves_png is not None:
        from .paths import check_output_file

        check_output_file(Path(curves_png), what="learning curves")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=args.seed)
    freeze = None
    if args.templates:
        from .templates import fix_templates

        freeze = fix_templates(model, args.templates)
    t0 = time.monotonic()
    history = [] if curves_png is not None else None
    acc = train(model, ds, epochs=args.epochs, seed=args.seed, progress=not args.quiet,
                freeze=freeze, history=history)
    curves = {}
    if history is not None:
        curves[f"{args.templates} templates" if args.templates else "trained"] = history
    base_acc = None
    if args.baseline:
        base = default_model(ds.x_train.shape[1:], ds.num_classes, seed=args.seed)
        curves["no templates"] = []
        base_acc = train(base, ds, epochs=args.epochs, seed=args.seed,
                         progress=not args.quiet, history=curves["no templates"])
    with atomic_file(args.output, what="model file") as tmp:
        export_model(model, torch.tensor(ds.x_test[:2]), tmp)
    report = {"model": os.path.abspath(args.output), "dataset": _dataset_info(args),
              "epochs": args.epochs, "accuracy": {"float": acc},
              "seconds": round(time.monotonic() - t0, 2)}
    _say(f"trained {args.epochs} epochs in {report['seconds']} s: float test accuracy "
         f"{acc:.2%} -> {args.output}")
    if freeze is not None:
        report["templates"] = freeze.to_json()
        _say(f"templates: {freeze.count} kernels of {freeze.layer} fixed to HLAC templates; "
             f"trainable parameters {freeze.params_before} -> {freeze.params_after} "
             f"({freeze.layer} weights {freeze.conv_weights_before} -> "
             f"{freeze.conv_weights_after})")
    if base_acc is not None:
        report["accuracy"]["untemplated"] = base_acc
        _say(f"untemplated baseline (same seed): float test accuracy {base_acc:.2%}")
    if curves:
        with atomic_file(curves_png, what="learning curves") as tmp:
            plot_learning_curves(curves, tmp)
        report["curves"] = curves
        report["curves_png"] = os.path.abspath(curves_png)
        _say(f"learning curves -> {curves_png}")
    return report


def _quant_options(args, method=None, wbits=None, schedule=None, layer_bits=None):
    """QuantOptions from the shared quantization flags."""
    from .quant.options import DEFAULT_BITS, QuantOptions, retrain_config

    method = method or args.method
    cfg = retrain_config(method, epochs=args.retrain_epochs, lr=args.lr, seed=args.seed,
                         progress=not args.quiet)
    binary = method == "binary"
    extra = _bdcnn_options(args, method)
    return QuantOptions(method=method, wbits=DEFAULT_BITS[method] if wbits is None else wbits,
                        layer_bits=layer_bits, abits=extra.pop("abits", args.abits),
                        schedule=schedule, portions=args.portions, partition=args.partition,
                        ternary=args.ternary, granularity=args.scale, tie=args.tie,
                        edge_layers=args.edge_layers,
                        alpha=args.alpha if binary else "none",
                        input_bits=args.input_bits if binary else None,
                        calib_percentile=args.calib_percentile, retrain=cfg,
                        **_bitmask_options(args, method), **extra)


def _bdcnn_options(args, method) -> dict:
    """The ``--method bdcnn`` flags of ``quantize``: ``--qbits`` is its activation width."""
    if method != "bdcnn":
        if getattr(args, "qbits", None) is not None or getattr(args, "coef_bits", None) \
                is not None:
            from .quant.fixed import QuantizationError

            raise QuantizationError(f"--qbits and --coef-bits apply to --method bdcnn, not "
                                    f"{method}")
        return {}
    from .quant.bdcnn import DEFAULT_QBITS

    qbits = getattr(args, "qbits", None)
    return {"abits": DEFAULT_QBITS if qbits is None else qbits,
            "coef_bits": getattr(args, "coef_bits", None),
            "range_mode": getattr(args, "range", "static"),
            "restarts": getattr(args, "restarts", None) or 10}


def _bitmask_options(args, method) -> dict:
    """The ``--method bitmask`` flags of ``quantize`` (other commands: none)."""
    if method != "bitmask":
        return {}
    from .quant.options import BITMASK_BUDGET

    return {"span": getattr(args, "span", None),
            "rounding": getattr(args, "rounding", "projection"),
            "patterns": getattr(args, "pattern", None),
            "same_pattern": getattr(args, "same_pattern", False),
            "search_budget": getattr(args, "search_budget", None) or BITMASK_BUDGET}


def cmd_quantize(args) -> dict:
    from . import hwq
    from .flow import quantize_model
    from .quant.options import accuracy_hint

    wbits, layer_bits = args.bits_spec or (args.wbits, None)
    opts = _quant_options(args, wbits=wbits, schedule=args.schedule, layer_bits=layer_bits)
    ds = _dataset(args)
    calib = _note_calibration(args, ds)
    net, report = quantize_model(args.model, ds, _dataset_info(args), options=opts,
                                 calib=calib, seed=args.seed,
                                 log=None if args.quiet else _progress("quantize"))
    hwq.save(net, args.output)
    report["network"] = os.path.abspath(args.output)
    if "binary" in net.metadata:  # the layer configuration: weights, input, output per layer
        report["binary"] = net.metadata["binary"]
        for row in report["binary"]["layers"]:
            _say(f"  {row['name']:<12} {row['weights']} weights, {row['input']} input -> "
                 f"{row['output']}")
    acc = report["accuracy"]
    drop = (acc["float"] - acc["quantized"]) * 100
    from .quant.options import bits_label

    _say(f"{opts.method} w{bits_label(opts.wbits, opts.layer_bits)}/a{opts.abits} "
         f"({report['schedule']}): float "
         f"{acc['float']:.2%}, quantized (golden model) {acc['quantized']:.2%} "
         f"({-drop:+.2f} points) -> {args.output}")
    if "bitmask" in net.metadata:
        record = net.metadata["bitmask"]
        report["bitmask"] = record
        pats = ", ".join(f"{k}={v}" for k, v in record["patterns"].items())
        others = ", ".join(f"{k} {v}" for k, v in record["other_layers"].items())
        _say(f"  masks ({record['strategy']}, {record['evaluations']} evaluations on "
             f"{record['calib_images']} training images): {pats}"
             + (f"; {others}" if others else ""))
    if "templates" in net.metadata:
        report["templates"] = net.metadata["templates"]
        for name, rec in report["templates"].items():
            _say(f"  {name}: {rec['templates']} template kernels kept as the template encoding "
                 f"(the other {len(rec['template_ids']) - rec['templates']} channels fixed)")
    hint = accuracy_hint(opts, acc["float"], acc["quantized"])
    if hint:
        _say(f"hint: {hint}")
    report["hint"] = hint
    from .quant.report import unusual

    report["layer_notes"] = unusual(report["layer_report"])
    for line in report["layer_notes"]:
        _note(line)
    return report


def cmd_reuse(args) -> dict:
    from .reuse import analyse, parse_precisions

    precisions = parse_precisions(args.precision)
    if args.markdown:
        from .paths import check_output_file

        check_output_file(args.markdown, what="Markdown table", inputs=[args.model])
    if str(args.model).endswith(".hwq") and args.precision != _REUSE_PRECISIONS:
        _note("a .hwq network is counted with its own integers (precision 'hwq'); "
              "--precision applies to float models")
    ds = _dataset(args)
    if args.images > len(ds.x_test):
        _note(f"--images {args.images} is more than the {len(ds.x_test)} test images; "
              f"counting all {len(ds.x_test)}")
    t0 = time.monotonic()
    report = analyse(args.model, ds, layer=args.layer, images=args.images,
                     precisions=precisions, templates=args.templates, seed=args.seed)
    report["seconds"] = round(time.monotonic() - t0, 2)
    report["dataset"] = _dataset_info(args)
    _say(f"computation reuse of layer '{report['layer']}' over {report['images']} test images "
         f"(distinct (weight, input) pairs per image, by repeat count; {report['seconds']} s):")
    _say(report["markdown"])
    if args.markdown:
        from .paths import write_text

        write_text(args.markdown, report["markdown"] + "\n", what="Markdown table")
    return report


#: ``hwquant reuse --precision`` default.
_REUSE_PRECISIONS = "float32,float16,fixed8"


def cmd_import(args) -> dict:
    """``hwquant import MODEL.onnx``: an already quantized QONNX model (Brevitas, FINN) into a
    .hwq network, its integers kept (:mod:`hwquant.qonnx`); accuracy of the ONNX graph
    (qonnx ``execute_onnx``) and of the golden model on the test split."""
    from . import hwq
    from .qonnx import compare_with_onnx, import_qonnx

    data = args.data
    path = data if data.endswith(".npz") or os.path.isfile(data) else None
    from .data import load_dataset

    ds = load_dataset(None if path else data, path=path)
    net, info = import_qonnx(args.model)
    if tuple(net.input_shape) != tuple(ds.x_test.shape[1:]):
        raise HwquantError(f"Model input shape {tuple(net.input_shape)} does not match the "
                           f"dataset's {tuple(ds.x_test.shape[1:])}")
    if net.output.out_channels != ds.num_classes:
        raise HwquantError(f"Model produces {net.output.out_channels} logits, but the dataset "
                           f"has {ds.num_classes} classes")
    cmp = compare_with_onnx(net, info, ds)
    import dataclasses

    meta = {"dataset": {"path": os.path.abspath(path)} if path else {"name": data},
            "model": os.path.abspath(args.model), "method": "qonnx",
            "accuracy": {"float": cmp["accuracy"]["onnx"],
                         "quantized": cmp["accuracy"]["golden"]}}
    net = dataclasses.replace(net, metadata=meta)
    hwq.save(net, args.output)
    for line in info["notes"]:
        _note(line)
    acc = cmp["accuracy"]
    _say(f"imported {len(net.layers)} layers: ONNX (execute_onnx) {acc['onnx']:.2%}, golden "
         f"model {acc['golden']:.2%}, same class on {cmp['agreement']:.2%} of the "
         f"{cmp['images']} test images; logits "
         f"{'equal (rescaled) on every image' if cmp['logits_exact'] else 'not all equal'}"
         f" -> {args.output}")
    if cmp["agreement"] < 1 and cmp["tied_images"]:
        _note(f"{cmp['tied_images']} test images have tied largest logits (the golden model "
              f"takes the lowest class index); {cmp['differ_untied']} other images differ")
    for layer in net.layers:
        ep = type(getattr(layer, "epilogue", None)).__name__
        _say(f"  {layer.name:<14} {type(layer).__name__:<10} "
             f"{getattr(layer, 'encoding', ''):<7} -> {layer.out_format.bits}-bit"
             f"{' bipolar' if layer.out_format.bipolar else ''}"
             f"{'' if ep == 'NoneType' else ' ' + ep}")
    return {"network": os.path.abspath(args.output), "model": os.path.abspath(args.model),
            **cmp, "notes": info["notes"], "stated_rounding": info["stated"],
            "layers": [{"name": layer.name, "kind": type(layer).__name__.lower(),
                        "encoding": getattr(layer, "encoding", None),
                        "out_format": layer.out_format.to_json()} for layer in net.layers]}


def _compare_bdcnn(args, base):
    """The Binarized-DCNN grid's shared options of ``compare`` (None without ``bdcnn`` in
    ``--methods``; its flags without it are an error)."""
    import dataclasses

    given = [flag for flag, v in (("--basis", args.grid_basis), ("--qbits", args.grid_qbits),
                                  ("--coef-bits", args.grid_coef_bits),
                                  ("--restarts", args.grid_restarts),
                                  ("--range", None if args.grid_range == "static" else 1))
             if v is not None]
    if "bdcnn" not in args.methods:
        if given:
            from .quant.fixed import QuantizationError

            raise QuantizationError(f"{', '.join(given)} apply to --methods bdcnn")
        return None
    return dataclasses.replace(base, method="bdcnn", coef_bits=args.grid_coef_bits,
                               range_mode=args.grid_range, restarts=args.grid_restarts or 10,
                               schedule="none")


def cmd_compare(args) -> dict:
    from .compare import BDCNN_GRID, run_compare

    base = _quant_options(args, method="fixed", wbits=8)
    binary = _quant_options(args, method="binary") if "binary" in args.methods else None
    bdcnn = _compare_bdcnn(args, base)
    ds = _dataset(args)
    calib = _note_calibration(args, ds)
    report = run_compare(args.model, ds, _dataset_info(args), args.output,
                         methods=args.methods, bits=args.bits, schedules=args.schedules,
                         base=base, calib=calib, seed=args.seed,
                         log=_progress("compare"), binary=binary,
                         binary_abits=args.binary_abits, bdcnn=bdcnn,
                         basis=args.grid_basis or BDCNN_GRID, qbits=args.grid_qbits or BDCNN_GRID)
    out = Path(args.output).resolve()
    _say((out / "compare.md").read_text())
    _say(f"-> {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.png'}")
    return report


def cmd_sweep(args) -> dict:
    import dataclasses

    from .boards import load_board
    from .sweep import SweepConfig, parse_bit_specs, parse_folds, run_sweep

    def options(method, wbits, layer_bits):
        o = _quant_options(args, method=method, wbits=wbits, layer_bits=layer_bits)
        return dataclasses.replace(o, retrain=dataclasses.replace(o.retrain, progress=False))

    if args.cache is not None and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise HwquantError(f"--cache {args.cache} is a file, not a directory")
    if args.address and args.workers:
        _note("--workers with --address: at most that many tasks in flight on the cluster")
    cfg = SweepConfig(
        model=Path(args.model), dataset={"path": args.data} if args.data else
        {"name": args.dataset}, board=load_board(args.board, args.boards_dir),
        methods=args.methods, specs=parse_bit_specs(args.bits),
        folds=parse_folds(args.fold), options=options, out_dir=Path(args.output),
        cache_dir=args.cache, boards_dir=args.boards_dir, synth=args.synth, place=args.place,
        lut_budget=args.lut_budget, pnr_seed=args.place_seed,
        calib=args.calib or DEFAULT_CALIB, seed=args.seed, workers=args.workers,
        address=args.address, timeout=args.timeout,
        memory=None if args.memory is None else int(args.memory * 2**30), quiet=args.quiet)
    report = run_sweep(cfg, log=_progress("sweep"))
    out = Path(args.output).resolve()
    c = report["counts"]
    _say(f"{c['ok']} of {c['points']} points ok, {c['failed']} failed, {c['cached']} cached; "
         f"chosen for {report['board']['id']}: {report['chosen'] or 'none (no point fits)'}")
    _say(f"-> {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    return report


def _add_engine_stages_arg(p):
    from .engine_stages import AUTO_LEVELS

    p.add_argument("--engine-stages", default="auto", metavar="auto|N|LAYER=N,...",
                   help=f"pipeline cuts inside each fully unrolled layer's adder graph (each a "
                   f"cycle of latency): auto (default: at most {AUTO_LEVELS} adder levels per "
                   f"stage), N for every such layer, or LAYER=N (unnamed layers: auto)")


def _board_arg(args):
    """``--board`` as ``compile_network`` takes it: a bundled id, or the file of a user board
    of ``--boards-dir``; an unknown name fails here, before any work."""
    from .boards import board_path, load_board

    if args.board is None:
        return None
    load_board(args.board, args.boards_dir)
    path = board_path(args.board, args.boards_dir)
    return args.board if path is None else str(path)


def cmd_compile(args) -> dict:
    from . import hwq
    from .compile import compile_network

    board = _board_arg(args)
    net = hwq.load(args.network)
    res = compile_network(net, args.output, fold=args.fold, target_cycles=args.target_cycles,
                          fifo_depth=args.fifo_depth, board=board, engines=args.engine,
                          engine_stages=args.engine_stages, progress=_progress("compile"))
    report = dict(res.report)
    for key in ("verilog", "verilog_probes", "network"):
        report[key] = str(res.build_dir.resolve() / report[key])
    _say(f"compiled {len(res.network.layers)} layers -> {report['verilog']}")
    for row in report["layers"]:
        fold = f"PE={row['pe']} SIMD={row['simd']}" if row["pe"] else ""
        engine = f"engine {row['engine']}" if row["pe"] else ""
        if row["pe"] and row["engine_stages"]:
            engine += f" +{row['engine_stages']} stages"
        _say(f"  {row['name']:<12} {row['kind']:<10} {fold:<18} {engine:<12} "
             f"{row['cycles']:>8} cycles")
        if row["pe"]:
            _say(f"  {'':<12} engine: {row['engine_reason']}")
    _say(f"  {report['cycles_per_inference']} cycles per inference (replayed schedule; "
         f"busiest stage {report['bottleneck_cycles']})")
    fifos = report["fifos"]
    if fifos:
        depths = ", ".join(f"{name}={row['depth']}" for name, row in fifos.items())
        _say(f"  FIFOs: {depths} ({report['fifo_memory_bits']} bits)")
    return report


def cmd_build(args) -> dict:
    from . import hwq
    from .boards import load_board
    from .fpga_flow import BuildToolError, build_for_board

    board = load_board(args.board, args.boards_dir)
    net = hwq.load(args.network)
    try:
        rep = build_for_board(net, board, args.output, fold=args.fold,
                              bitstream=args.bitstream, seed=args.seed,
                              boards_dir=args.boards_dir, lut_budget=args.lut_budget,
                              target_fps=args.target_fps, clock_mhz=args.clock_mhz,
                              engine_stages=args.engine_stages, progress=_progress("build"))
    except BuildToolError as e:  # a tool's log tail: shown as it is, then one error line
        head, _, tail = str(e).partition("\n")
        for line in tail.splitlines():
            _say(f"  | {line}")
        raise BuildToolError(head) from None
    out = Path(args.output).resolve()
    model, pnr, rate = rep["model"], rep["pnr"], rep["images_per_s"]
    _say(f"built for {board.id}: model {model['used']['lut']} LUT "
         f"({model['utilization']['lut']:.0%}), {model['used']['dsp']} DSP, "
         f"{model['used']['bram']} BRAM; yosys {rep['synth']['lut']} LUT, "
         f"{rep['synth']['ff']} FF, {rep['synth']['dsp']} DSP, {rep['synth']['bram']} BRAM")
    pll = rep["clock"]["pll"]
    if pll is not None:
        _say(f"  clock: {pll['primitive']} {pll['f_in_mhz']:g} MHz -> {pll['f_out_mhz']:.4g} MHz "
             f"(asked {pll['requested_mhz']:g}; {', '.join(f'{k}={v}' for k, v in pll['params'].items())})")
    if pnr is not None:
        clock = (f"board clock {board.clock_mhz:g} MHz" if pll is None else
                 f"PLL clock {rep['clock']['design_mhz']:.4g} MHz")
        at = ("the board clock" if pll is None else "the PLL clock")
        _say(f"  nextpnr: Fmax {pnr['fmax_mhz']:.1f} MHz ({clock})"
             f"; {rep['cycles_per_inference']} cycles per image: "
             f"{rate['at_design_clock']:,.0f} images/s at {at}, "
             f"{rate['at_fmax']:,.0f} at Fmax (the {rep['uart']['baud']} baud link carries "
             f"{rate['uart_bound']:,.0f})")
    if "bitstream" in rep["files"]:
        _say(f"  bitstream: {out / rep['files']['bitstream']}")
    _say(f"-> {out / 'build.json'}")
    return rep


def cmd_sim(args) -> dict:
    from .simulate import simulate_build

    vectors = args.vectors if args.vectors == "all" else int(args.vectors)
    res = simulate_build(args.build_dir, vectors=vectors, seed=args.seed, stall=args.stall,
                         mode=args.driver, jobs=args.jobs, verbose=args.verbose,
                         progress=_progress("sim"))
    verdict = "bit-exact" if res["passed"] else "MISMATCH"
    _say(f"{verdict}: {res['vectors']} images, {res['mismatches']} mismatching output words; "
         f"cycles per inference measured {res['cycles_per_inference']} vs predicted "
         f"{res['predicted_cycles']}; {res['vectors'] / res['sim_seconds']:,.1f} images/s "
         f"({res['mode']}" + (f", {res['jobs']} simulator processes" if res["jobs"] > 1
                               else "") + ")")
    if res["accuracy"] is not None:
        _say(f"  accuracy: RTL {res['accuracy']:.2%}, golden {res['golden_accuracy']:.2%} "
             f"({res['dataset']} test images)")
    if res["first_mismatch_layer"]:
        _say(f"  first layer that disagrees with the golden model: "
             f"'{res['first_mismatch_layer']}'")
    if not res["passed"]:
        _write_json(args.json, res)
        raise VerificationFailed(f"simulation of {args.build_dir} is not bit-exact")
    if res.get("saturated_inputs"):
        _note(f"{res['saturated_inputs']:.2%} of the test images' input values lie outside "
              f"the network's input format and saturated (the golden model and the hardware "
              f"see the same saturated codes)")
    return res


def cmd_estimate(args) -> dict:
    from .estimate.report import estimate_build

    res = estimate_build(args.build_dir, family=args.family, synth=args.synth,
                         progress=_progress("estimate"))
    m = res["model"]
    _say(f"model ({args.family}): {m['lut']} LUT, {m['ff']} FF, {m['dsp']} DSP, "
         f"{m['bram']} BRAM")
    if res.get("synth"):
        s = res["synth"]
        _say(f"yosys ({args.family}): {s['lut']} LUT, {s['ff']} FF, {s['dsp']} DSP, "
             f"{s['bram']} BRAM")
    return res


def cmd_demo(args) -> dict:
    from .demo import run_demo

    return run_demo(args.output, epochs=args.epochs, vectors=args.vectors,
                    family=args.family, board=None if args.no_board else args.board,
                    synth=not args.no_synth, progress=_progress("demo"))


def cmd_run(args) -> dict:
    from .host import run_board

    try:
        res = run_board(args.build_dir, args.port, images=args.images, seed=args.seed,
                        baud=args.baud, logits=args.logits, timeout=args.timeout,
                        progress=_progress("run"))
    except VerificationFailed as e:
        _write_json(args.json, getattr(e, "report", None))
        raise
    acc = (f"; accuracy {res['accuracy']:.2%} (golden model {res['golden_accuracy']:.2%})"
           if res["accuracy"] is not None else "")
    _say(f"board agrees with the golden model on {res['images']} images{acc}; "
         f"{res['images_per_s']:,.1f} images/s over {args.port} at {args.baud} baud")
    return res


def cmd_boards(args) -> dict:
    from .boards import boards_table

    rows = boards_table(args.boards_dir)
    _say(f"{'board':<16} {'family':<7} {'device':<22} {'package':<10} {'speed':<6} "
         f"{'clock':>9} {'LUT':>7} {'FF':>7} {'DSP':>4} {'BRAM':>5}  place & route")
    for row in rows:
        cap = row["capacity"]
        _say(f"{row['id']:<16} {row['family']:<7} {row['device']:<22} {row['package']:<10} "
             f"{row['speed'] or '-':<6} {row['clock_mhz']:>5g} MHz {cap['lut']:>7} "
             f"{cap['ff']:>7} {cap['dsp']:>4} {cap['bram']:>5}  "
             f"{row['nextpnr'] or 'none (Yosys counts only)'}")
    return {"boards": rows}


# -- parser --------------------------------------------------------------------------------
def _add_data_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dataset", default="digits", choices=["digits"],
                   help="bundled dataset (default: digits, scikit-learn's 8x8 digits)")
    g.add_argument("--data", metavar="F.npz",
                   help="your own data: x_train, y_train, x_test, y_test")


def _integer(text, lo, hi=None, *, also=None):
    """argparse type: an integer in ``[lo, hi]`` (or the keyword ``also``)."""
    if also is not None and text == also:
        return text
    try:
        value = int(text)
    except ValueError:
        prefix = f"'{also}' or " if also else ""
        raise argparse.ArgumentTypeError(f"must be {prefix}an integer, not {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        allowed = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise argparse.ArgumentTypeError(f"must be {allowed}, not {value}")
    return value


def _bits(text):
    return _integer(text, 2, 16)


def _bits_spec(text):
    """argparse type: ``B`` or ``B,LAYER=B,...`` (:func:`hwquant.quant.options.parse_bits`)."""
    from .quant.options import parse_bits

    try:
        wbits, layers = parse_bits(text)
    except HwquantError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    _integer(str(wbits), 1, 16)  # the width of every layer; each method checks its own range
    return wbits, layers


def _positive(text):
    return _integer(text, 1)


def _percentile(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in 50..100, not {text!r}") from None
    if not 50 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in 50..100, not {text}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _fraction(text):
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], not {text}")
    return value


def _fifo_depth(text):
    return _integer(text, 1, also="auto")


def _portions(text):
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers such as "
                                         f"0.5,0.75,0.875,1.0, not {text!r}") from None


def _int_list(text):
    return [_integer(v.strip(), 2, 16) for v in text.split(",")]


def _method_specs(text):
    """``sweep --methods``: :func:`hwquant.sweep.parse_method_specs`."""
    from .sweep import parse_method_specs

    try:
        return parse_method_specs(text)
    except HwquantError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--methods").lstrip(": ")) \
            from None


def _choices(allowed):
    def parse(text):
        values = [v.strip() for v in text.split(",")]
        bad = [v for v in values if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)} not among {', '.join(allowed)}")
        return values
    return parse


def _add_quant_args(p):
    from .quant.options import OPTION_CHOICES, SCHEDULE_RETRAIN

    g = p.add_argument_group("quantization")
    g.add_argument("--abits", type=lambda t: _integer(t, 1, 16), default=8,
                   help="activation bits, 2..16 (default 8); binary: 1..8, 1 = bipolar (BNN)")
    g.add_argument("--portions", type=_portions, default=None,
                   help="INQ accumulated portions, increasing to 1.0 (default per width: "
                        "5+ bits 0.5,0.75,0.875,1.0; 3 and 4 bits "
                        "0.2,0.4,0.6,0.7,0.8,0.9,0.95,1.0; 2 bits ten steps)")
    g.add_argument("--partition", choices=OPTION_CHOICES["partition"], default="magnitude",
                   help="which weights INQ quantizes first (default magnitude)")
    g.add_argument("--ternary", choices=OPTION_CHOICES["ternary"], default="twn",
                   help="twn: one scale (Δ = 0.7·E|W|); ttq: trained positive/negative scales")
    g.add_argument("--scale", choices=OPTION_CHOICES["scale"], default=None,
                   help="fixed-point scale / TWN α / INQ exponent range per layer or per "
                        "output channel (default: channel for TWN, layer otherwise; the "
                        "logits layer always has one)")
    g.add_argument("--edge-layers", choices=OPTION_CHOICES["edge-layers"], default=None,
                   help="weights of the first and last conv/linear layer: same (the method's) "
                        "or fixed8 (8-bit fixed point, as TWN/TTQ keep them at full "
                        "precision); default per method (README, Quantization defaults)")
    g.add_argument("--tie", choices=OPTION_CHOICES["tie"], default="paper",
                   help="INQ tie rule (default paper: ties to the larger magnitude)")
    g.add_argument("--alpha", choices=OPTION_CHOICES["alpha"], default="none",
                   help="binary: XNOR-Net per-output-channel weight scale mean|w| (channel) or "
                        "none (BNN, default); folded into the thresholds")
    g.add_argument("--input-bits", type=lambda t: _integer(t, 1, 16), default=None,
                   metavar="N", help="binary: bits of the network input, 2..16 (default 8; the "
                                     "first layer reads multi-bit pixels)")
    g.add_argument("--retrain-epochs", type=lambda t: _integer(t, 0),
                   default=None,
                   help=f"most epochs per retraining phase, stopped early on a validation "
                        f"split of the training images (default "
                        f"{SCHEDULE_RETRAIN['simple']['epochs']} for simple, "
                        f"{SCHEDULE_RETRAIN['incremental']['epochs']} per incremental or "
                        f"layerwise phase; binary: 100, no early stop; 0 = none)")
    g.add_argument("--lr", type=float, default=None,
                   help=f"retraining learning rate (Adam; default "
                        f"{SCHEDULE_RETRAIN['simple']['lr']:g} for simple, "
                        f"{SCHEDULE_RETRAIN['incremental']['lr']:g} otherwise, binary 0.03)")
    g.add_argument("--calib", type=_positive, default=None, metavar="N",
                   help=f"training images used to calibrate activation ranges (default "
                        f"{DEFAULT_CALIB}, or all if fewer)")
    g.add_argument("--calib-percentile", type=_percentile, default=None, metavar="P",
                   help="calibrate activation ranges at the P-th percentile of the "
                        "magnitudes (50..100) instead of the maximum: outliers saturate, "
                        "the rest keeps more resolution")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quiet", action="store_true", help="no progress bars")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line naming ``--help``, exit 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .quant.options import METHODS, OPTION_CHOICES, SCHEDULES

    parser = _Parser(
        prog="hwquant", description="Quantized CNNs to bit-exact FPGA hardware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--json", metavar="PATH", help="write a machine-readable report here")
        return p

    p = command("train", cmd_train, "train the bundled default CNN and export it (.pt2)")
    _add_data_args(p)
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--templates", type=lambda t: _integer(t, 0), default=0, metavar="T",
                   help="fix the first T kernels of the first conv layer to the HLAC templates "
                        "(+-3/sqrt(fan_in), excluded from every update; 3x3 kernels, T at most "
                        "the layer's output channels and 25)")
    p.add_argument("--curves", default=None, metavar="PNG",
                   help="write the learning curves (training loss, test accuracy per epoch) "
                        "as a PNG (default with --templates: MODEL.curves.png)")
    p.add_argument("--baseline", action="store_true",
                   help="with --templates: also train the untemplated model (same seed) and "
                        "plot both")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.pt2")

    p = command("quantize", cmd_quantize, "quantize an exported model into a .hwq network")
    p.add_argument("model", metavar="MODEL.pt2")
    p.add_argument("--method", default="fixed", choices=list(METHODS),
                   help="fixed (post-training fixed point), inq (power-of-two weights), "
                        "ternary (TWN / TTQ), binary (BNN / XNOR-Net: weights -1/+1, "
                        "BatchNorm folded into thresholds), bitmask (bit-masked sign-magnitude "
                        "fixed point, post-training, --active/--span)")
    p.add_argument("--bits", "--wbits", dest="bits_spec", type=_bits_spec, default=None,
                   metavar="B[,LAYER=B,...]",
                   help="weight bits: fixed 2..16 (default 8), inq 2..8 (default 5), "
                        "ternary 2, binary 1; fixed and inq also per layer: 4,conv2d_0=8 or "
                        "4,edges=8 (edges: the first and the last conv/linear layer)")
    p.add_argument("--schedule", choices=OPTION_CHOICES["schedule"], default=None,
                   help="when weights are quantized and what is retrained (default: none for "
                        "fixed above 4 bits, simple at 4 and fewer; incremental for inq, "
                        "simple for ternary)")
    g = p.add_argument_group("bitmask (post-training, masks searched per conv layer)")
    g.add_argument("--active", dest="wbits", type=lambda t: _integer(t, -(1 << 30)),
                   metavar="M", help="bitmask: bits a mask keeps, sign included (default 3)")
    g.add_argument("--span", type=lambda t: _integer(t, -(1 << 30)), default=None,
                   metavar="N", help="bitmask: bits of the masked sign-magnitude format, sign "
                                     "included, 2..16 (default 8)")
    g.add_argument("--rounding", choices=OPTION_CHOICES["rounding"], default="projection",
                   help="bitmask: nearest value under the mask (projection, ties to the larger "
                        "magnitude; default) or round to N bits then clear the masked bits "
                        "(literal)")
    g.add_argument("--pattern", default=None, metavar="L=PAT,...",
                   help="bitmask: fix conv layers' masks by hand, e.g. conv1=X0.0XX,"
                        "conv2=5_2_0_1_0 (X active, 0 masked, . the binary point; or the "
                        "T_K_p.._0 codes of the bit-masking paper)")
    g.add_argument("--same-pattern", action="store_true",
                   help="bitmask: one mask (and binary point) for every conv layer")
    g.add_argument("--search-budget", type=lambda t: _integer(t, 1), default=None,
                   metavar="E", help="bitmask: most mask evaluations beyond the same-pattern "
                                     "pass (default 500); exhaustive below it, coordinate "
                                     "descent above")
    g = p.add_argument_group("bdcnn (Binarized-DCNN, post-training binary decomposition)")
    g.add_argument("--basis", dest="wbits", type=lambda t: _integer(t, -(1 << 30)),
                   metavar="K", help="bdcnn: binary bases per neuron, 1..8 and fewer than its "
                                     "weights (default 6)")
    g.add_argument("--qbits", type=lambda t: _integer(t, -(1 << 30)), default=None,
                   metavar="Q", help="bdcnn: bit planes of every layer input, 2..8 (default 6; "
                                     "the activation width)")
    g.add_argument("--coef-bits", type=lambda t: _integer(t, -(1 << 30)), default=None,
                   metavar="B", help="bdcnn: fixed-point bits of the coefficients, 2..16 "
                                     "(default 8)")
    g.add_argument("--range", choices=OPTION_CHOICES["range"], default="static",
                   help="bdcnn: activation range calibrated offline (static, default) or per "
                        "sample (the paper's: each layer quantizes its whole input map)")
    g.add_argument("--restarts", type=lambda t: _integer(t, 1), default=None, metavar="L",
                   help="bdcnn: random restarts of the decomposition (default 10)")
    _add_quant_args(p)
    _add_data_args(p)
    p.add_argument("-o", "--output", required=True, metavar="NET.hwq")

    p = command("import", cmd_import,
                "import an already quantized QONNX model (Brevitas export_qonnx) as .hwq")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--data", default="digits", metavar="NAME|F.npz",
                   help="dataset for the accuracy report: digits (default) or your .npz")
    p.add_argument("-o", "--output", required=True, metavar="NET.hwq")

    p = command("compare", cmd_compare,
                "accuracy per method x bits x schedule on one split (JSON, Markdown, PNG)")
    p.add_argument("model", metavar="MODEL.pt2")
    p.add_argument("--methods", type=_choices(METHODS),
                   default=[m for m in METHODS if m not in ("binary", "bdcnn")],
                   help="comma-separated, of fixed,inq,ternary,binary (default: "
                        "fixed,inq,ternary)")
    p.add_argument("--binary-abits", type=lambda t: [_integer(v.strip(), 1, 8)
                                                     for v in t.split(",")],
                   default=[1, 2, 4], metavar="A,...",
                   help="activation widths of the binary rows (default 1,2,4: W1A1, W1A2, "
                        "W1A4)")
    p.add_argument("--bits", type=_int_list, default=[2, 3, 4, 5],
                   help="comma-separated weight widths (default 2,3,4,5; ternary is 2-bit)")
    p.add_argument("--schedules", type=_choices(OPTION_CHOICES["schedule"]),
                   default=list(SCHEDULES), help="comma-separated (default: "
                   "simple,incremental,layerwise; 'none' = post-training)")
    g = p.add_argument_group("bdcnn grid (--methods bdcnn: one run per K and Q)")
    grid_list = (lambda t: [_integer(v.strip(), -(1 << 30)) for v in t.split(",")])
    g.add_argument("--basis", dest="grid_basis", type=grid_list, default=None, metavar="K,...",
                   help="bdcnn: basis counts, each 1..8 (default 2,4,6,8)")
    g.add_argument("--qbits", dest="grid_qbits", type=grid_list, default=None, metavar="Q,...",
                   help="bdcnn: bit planes, each 2..8 (default 2,4,6,8)")
    g.add_argument("--coef-bits", dest="grid_coef_bits", type=lambda t: _integer(t, -(1 << 30)),
                   default=None, metavar="B", help="bdcnn: coefficient bits, 2..16 (default 8)")
    g.add_argument("--range", dest="grid_range", choices=OPTION_CHOICES["range"],
                   default="static", help="bdcnn: activation range (default static)")
    g.add_argument("--restarts", dest="grid_restarts", type=lambda t: _integer(t, 1),
                   default=None, metavar="L", help="bdcnn: decomposition restarts (default 10)")
    _add_quant_args(p)
    _add_data_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR")

    p = command("sweep", cmd_sweep,
                "design sweep on Ray: method x bits x folding, quantized, compiled, estimated "
                "(and synthesised, placed); Pareto fronts and the point for the board")
    p.add_argument("model", metavar="MODEL.pt2")
    p.add_argument("--board", default="icebreaker", metavar="NAME",
                   help="board the points are fitted to and chosen for (default icebreaker)")
    p.add_argument("--boards-dir", default=None, metavar="DIR",
                   help="a directory of your own board files (<id>.toml), beside the bundled")
    p.add_argument("--methods", type=_method_specs, default="fixed,inq,ternary",
                   metavar="METHOD[:KEY=V[/V...]...],...",
                   help="comma-separated method specs (default fixed,inq,ternary): "
                        f"{', '.join(METHODS)}, twn, ttq (ternary's variants), each with "
                        "options of its own after colons, a value list '/'-separated, e.g. "
                        "bdcnn:basis=4/6:qbits=6, bitmask:active=3/4:span=6, "
                        "ttq:retrain-epochs=5, fixed:abits=6 (README, Design sweeps); "
                        "ternary and binary run once, at their one width")
    p.add_argument("--bits", default="4,8", metavar="SPEC,...",
                   help="comma-separated weight-width specs, each B or B:LAYER=B:... "
                        "(per-layer widths; edges = the first and the last layer), e.g. "
                        "2,4,4:edges=8,8 (default 4,8)")
    p.add_argument("--fold", action="append", default=None, metavar="SPEC",
                   help="foldings: auto (the fastest that fits the board), max, min, or "
                        "LAYER=PE:SIMD,...; repeat the option, or list keywords: auto,max,min "
                        "(default auto)")
    p.add_argument("--synth", action="store_true", help="also synthesise every point (Yosys)")
    p.add_argument("--place", action="store_true",
                   help="also build every fitting point for the board: Yosys and nextpnr "
                        "(Fmax; images/s at Fmax)")
    p.add_argument("--lut-budget", type=_fraction, default=0.7, metavar="X",
                   help="share of the board's LUTs a point may fill (default 0.7)")
    p.add_argument("--place-seed", type=int, default=1, help="nextpnr seed (default 1)")
    p.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                   help="an existing Ray cluster (HOST:PORT of the head node, ray://HOST:PORT, "
                        "or auto); default: a local Ray started for the sweep")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="local Ray CPUs, i.e. points run at once (default: all cores)")
    p.add_argument("--timeout", type=_positive_float, default=3600.0, metavar="S",
                   help="seconds a task may run before it is cancelled (default 3600)")
    p.add_argument("--memory", type=_positive_float, default=None, metavar="GIB",
                   help="memory each task reserves from Ray (default 1.5 GiB per "
                        "quantization, 1 per point, 2 with --synth/--place)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache of finished quantizations, points and tool runs (default "
                        "OUT_DIR/cache); shared by sweeps that name the same one")
    _add_quant_args(p)
    _add_data_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR")

    p = command("compile", cmd_compile, "fold a network and emit its Verilog")
    p.add_argument("network", metavar="NET.hwq")
    p.add_argument("--fold", default="auto",
                   help="max | min | auto | LAYER=PE:SIMD,... (unnamed layers: auto)")
    p.add_argument("--target-cycles", type=_positive, default=None,
                   help="cycles per inference that 'auto' folding aims for")
    p.add_argument("--fifo-depth", type=_fifo_depth, default="auto",
                   help="depth of every FIFO: auto (the least that keeps the bottleneck rate, "
                   "from the replayed schedule) or a depth for all")
    p.add_argument("--board", default=None, metavar="NAME",
                   help="check the design fits this board (see boards/)")
    p.add_argument("--boards-dir", default=None, metavar="DIR",
                   help="a directory of your own board files (<id>.toml), beside the bundled")
    p.add_argument("--engine", action="append", default=[], metavar="LAYER=ENGINE",
                   help="dot engine of a layer: plain (its kind's own) or memo (value-grouped "
                   "sums, one product per distinct weight value); repeatable; unnamed layers: "
                   "the cheaper by the cost model")
    _add_engine_stages_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="BUILD_DIR")

    p = command("build", cmd_build, "build a network for a board: Verilog, constraints, Yosys, "
                                    "nextpnr (Fmax, utilization), bitstream")
    p.add_argument("network", metavar="NET.hwq")
    p.add_argument("--board", required=True, metavar="NAME", help="board (hwquant boards)")
    p.add_argument("--boards-dir", default=None, metavar="DIR",
                   help="a directory of your own board files (<id>.toml), beside the bundled")
    p.add_argument("--fold", default="auto",
                   help="auto (default: the most images/s that fits the board by the model) | "
                        "max | min | LAYER=PE:SIMD,...")
    p.add_argument("--target-fps", type=_positive_float, default=None, metavar="F",
                   help="with --fold auto: the least area reaching F images/s at the board "
                        "clock")
    p.add_argument("--lut-budget", type=_fraction, default=0.7, metavar="X",
                   help="share of the board's LUTs the model may fill (default 0.7)")
    p.add_argument("--bitstream", action="store_true",
                   help="also pack the bitstream (icepack, ecppack, gowin_pack)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("--clock-mhz", type=_positive_float, default=None, metavar="F",
                   help="run the design on a PLL (iCE40, ECP5) at the closest frequency at or "
                        "below F MHz that it makes from the board clock, instead of on the "
                        "board clock (nextpnr's target follows)")
    _add_engine_stages_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")

    p = command("boards", cmd_boards, "list the boards, their FPGAs and capacities")
    p.add_argument("--boards-dir", default=None, metavar="DIR",
                   help="a directory of your own board files (<id>.toml), listed and checked "
                        "beside the bundled ones")

    p = command("run", cmd_run, "classify test images on a board over its UART")
    p.add_argument("build_dir", metavar="BUILD_DIR")
    p.add_argument("--port", required=True, metavar="DEV",
                   help="serial port of the board (/dev/ttyUSB1, COM3, or a pyserial URL)")
    p.add_argument("--images", type=_positive, default=100,
                   help="test images to send (default 100)")
    p.add_argument("--baud", type=_positive, default=115200, help="default 115200")
    p.add_argument("--logits", action="store_true",
                   help="the board sends the logits after the class (checked too)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for each reply (default 5)")
    p.add_argument("--seed", type=int, default=0, help="which test images")

    p = command("sim", cmd_sim, "prove the Verilog bit-exact against the golden model")
    p.add_argument("build_dir", metavar="BUILD_DIR")
    p.add_argument("--vectors", type=lambda t: _integer(t, 1, also="all"), default=16,
                   help="test images, or 'all' for the whole test split (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stall", type=float, default=0.3,
                   help="probability of a valid gap / ready stall per cycle")
    p.add_argument("--driver", choices=["bulk", "python"], default="bulk",
                   help="bulk: stimulus and captures inside the simulator (default); "
                        "python: cocotb drivers on every clock edge")
    p.add_argument("--jobs", type=lambda t: _integer(t, 1, 256, also="auto"), default="auto",
                   help="bulk: simulator processes, each a contiguous share of the images "
                        "(default auto: one per core, at least 64 images each)")
    p.add_argument("--verbose", action="store_true", help="print simulator logs")

    p = command("estimate", cmd_estimate, "LUT/FF/DSP/BRAM: analytical model and Yosys")
    p.add_argument("build_dir", metavar="BUILD_DIR")
    p.add_argument("--family", default="ice40", choices=["ice40", "ecp5", "xilinx", "gowin"])
    p.add_argument("--synth", action="store_true", help="also synthesize with Yosys")

    p = command("reuse", cmd_reuse, "count repeated (weight, input) products of a layer "
                "(computation reuse, with and without templates)")
    p.add_argument("model", metavar="MODEL.pt2|NET.hwq")
    p.add_argument("--layer", metavar="NAME|INDEX",
                   help="weight layer by name or index (default: the first conv layer)")
    p.add_argument("--images", type=_positive, default=10,
                   help="test images drawn at random (seeded), averaged (default 10)")
    p.add_argument("--precision", default=_REUSE_PRECISIONS,
                   help="codes of the operands: float32, float16, fixed8 (comma-separated)")
    p.add_argument("--templates", type=lambda t: _integer(t, 0, 25), default=0, metavar="T",
                   help="also count with the first T kernels replaced by HLAC templates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", metavar="F.md", help="write the table here")
    _add_data_args(p)

    p = command("demo", cmd_demo, "train -> quantize -> compile -> sim -> estimate, report")
    p.add_argument("-o", "--output", default="demo_out", metavar="OUT_DIR")
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--vectors", type=_positive, default=16)
    p.add_argument("--board", default="icebreaker",
                   help="build for this board (id or TOML path; default icebreaker): folding "
                        "that fits it, Yosys, nextpnr, bitstream; Fmax and images/s")
    p.add_argument("--no-board", action="store_true",
                   help="no board build: compile with --fold auto, estimate for --family")
    p.add_argument("--family", default=None, choices=["ice40", "ecp5", "xilinx", "gowin"],
                   help="estimate for this family (default: the board's, else ice40)")
    p.add_argument("--no-synth", action="store_true", help="skip the Yosys run")
    return parser


#: Each command's output (``-o``): (kind, what it is, the marker file of its directory).
_OUTPUTS = {
    "train": ("file", "model file", None),
    "quantize": ("file", "network file", None),
    "import": ("file", "network file", None),
    "compare": ("dir", "compare", "compare.json"),
    "sweep": ("dir", "sweep", "sweep.json"),
    "compile": ("dir", "build", "compile.json"),
    "build": ("dir", "board build", "build.json"),
    "demo": ("dir", "demo", "report.json"),
}
#: Arguments that name what a command reads.
_INPUTS = ("model", "network", "data", "build_dir")


def _check_paths(args) -> None:
    """Refuse unusable output paths before any work starts (:mod:`hwquant.paths`)."""
    from .paths import BUILD_FILES, check_output_dir, check_output_file

    inputs = [getattr(args, key) for key in _INPUTS if getattr(args, key, None)]
    outputs = []
    if args.command in _OUTPUTS:
        kind, what, marker = _OUTPUTS[args.command]
        if kind == "file":
            check_output_file(args.output, what=what, inputs=inputs)
        else:
            # compile reads its network in full first: recompiling BUILD/network.hwq into
            # BUILD is fine.
            check_output_dir(args.output, what=what, marker=marker, inputs=inputs,
                             inputs_inside_ok=args.command in ("compile", "build"))
        outputs.append(args.output)
        if args.command in ("compile", "build"):  # the build's own files, before the build exists
            outputs += [Path(args.output) / name for name in BUILD_FILES]
    if args.json:
        check_output_file(args.json, what="JSON report", inputs=inputs, outputs=outputs)


def _one_line(exc) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) \
        or type(exc).__name__


def _forget(exc) -> None:
    """Drop the frames of ``exc`` (and of the exceptions chained to it) and collect them with
    Amaranth's warnings about components that were never elaborated silenced: after an error,
    the half-built hardware is of no interest to anyone."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
    if "amaranth" in sys.modules:
        import gc

        from amaranth.hdl import UnusedElaboratable

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusedElaboratable)
            gc.collect()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that every temporary output is removed."""


#: Set by the SIGTERM handler: code that catches the interrupt and raises its own (Ray's
#: ``ray.wait`` and ``ray.get`` turn any KeyboardInterrupt raised in a signal handler into
#: a plain one) still ends with :data:`EXIT_TERMINATED`.
_terminated = threading.Event()


def _on_sigterm(signum, frame):
    _terminated.set()
    raise _Terminated


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    _terminated.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    debug = bool(os.environ.get("HWQUANT_DEBUG"))
    stderr = sys.stderr
    sys.stderr = _LineTrackingStream(stderr)
    try:
        _check_paths(args)
        report = args.func(args)
        _note_vectors(args, report)
        _write_json(args.json, report)
        return EXIT_OK
    except KeyboardInterrupt as e:
        _forget(e)
        _start_message_line()
        _say("interrupted")
        terminated = isinstance(e, _Terminated) or _terminated.is_set()
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except (ToolNotFoundError, ToolFailedError, VerificationFailed) as e:
        _say(f"error: {e}")
        _forget(e)
        return EXIT_FAIL
    except (HwquantError, ValueError, OSError) as e:
        if debug:
            raise
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.strerror:
            # Permissions, a full disk, a path that is not what it should be.
            where = f": {e.filename}" if e.filename else ""
            _say(f"error: {e.strerror}{where}")
        else:
            _say(f"error: {_one_line(e)}")
        _forget(e)
        return EXIT_BAD_INPUT
    except Exception as e:
        if debug:
            raise
        _say(f"error: internal error ({type(e).__name__}: {_one_line(e)}); run with "
             f"HWQUANT_DEBUG=1 for the traceback")
        _forget(e)
        return EXIT_FAIL
    finally:
        sys.stderr = stderr
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
