# amaranth: UnusedElaboratable=no
"""The per-sample range's timing models (:mod:`hwquant.schedule.sample`) cycle by cycle
against their components in the Amaranth simulator under random valid gaps and ready stalls:
:class:`~hwquant.hw.sample_quant.SampleQuantizer` (codes and tokens) and
:class:`~hwquant.hw.sample_quant.SampleCombine` (MVU beats and tokens in)."""

import numpy as np
import pytest
from netbuilders import sample_bdcnn_layer
from timingsim import check_timing

from hwquant import ir
from hwquant.golden.bdcnn import reciprocal_shift
from hwquant.hw.sample_quant import SampleCombine, SampleQuantizer
from hwquant.sample_range import inside_sums, mvu_twin
from hwquant.schedule import SampleCombineTiming, SampleQuantizerTiming


@pytest.mark.parametrize("beats,lanes,qbits", [(1, 1, 2), (5, 2, 4), (9, 3, 6)])
@pytest.mark.parametrize("stalls", [0.0, 0.3, 0.6], ids=["free", "stalls", "heavy"])
def test_quantizer_model_is_cycle_exact(beats, lanes, qbits, stalls):
    fmt = ir.ActFormat(6, True, 0)
    dut = SampleQuantizer(fmt, lanes, beats, qbits)
    model = SampleQuantizerTiming(beats, qbits + reciprocal_shift(fmt.bits))
    maps = 4
    fired = check_timing(dut, model, outputs=("o_stream", "r_stream"), in_beats=[maps * beats],
                         cycles=maps * (2 * beats + 40) * (3 if stalls else 1) + 60,
                         seed=beats + qbits, valid_gap=stalls, ready_stall=stalls)
    assert fired["i_stream"] >= 2 * beats and fired["r_stream"] >= 2, fired


@pytest.mark.parametrize("conv,fold", [(False, (2, 1)), (False, (4, 1)), (True, (1, 1)),
                                       (True, (2, 1))], ids=["linear_nf2", "linear_nf1",
                                                             "conv_nf4", "conv_nf2"])
@pytest.mark.parametrize("stalls", [0.0, 0.3, 0.6], ids=["free", "stalls", "heavy"])
def test_combine_model_is_cycle_exact(conv, fold, stalls):
    rng = np.random.default_rng(3)
    base = sample_bdcnn_layer(rng, ir.ActFormat(6, True, 0), 4, oc=4, ic=2, k=3, conv=conv,
                              **({"padding": 1} if conv else {}))
    layer = type(base)(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                          "fold": ir.Fold(*fold)})
    positions = len(inside_sums(layer))
    dut = SampleCombine(layer, p_format=mvu_twin(layer).out_format, rin=inside_sums(layer))
    beats = positions * (layer.out_channels // fold[0])
    samples = 3
    fired = check_timing(dut, SampleCombineTiming(beats), inputs=("p_stream", "t_stream"),
                         in_beats=[samples * beats, samples], cycles=samples * beats * 4 + 40,
                         seed=fold[0], valid_gap=stalls, ready_stall=stalls)
    assert fired["t_stream"] >= 1 and fired["o_stream"] >= beats, fired
