"""Power-of-two and ternary networks through quantize -> compile -> cocotb + Verilator.

Every output word and every layer's probe stream is compared with the golden model under
random valid gaps and ready stalls (``hwquant sim``), for the default CNN and for a model shape
no other test uses, with unrolled (constant shifts) and folded (code ROM + shifters) layers.
"""


import pytest
from flows import make_unseen, quantize_compile_sim

pytestmark = pytest.mark.sim


def test_default_cnn_inq4_bit_exact(trained_default_pt2, tmp_path):
    """The default CNN quantized with INQ 4-bit simulates bit-exact end to end (three
    portions of 3 epochs each: half the time of the 4-bit default schedule, whose accuracy
    ``test_schedules`` checks)."""
    rep, net = quantize_compile_sim(trained_default_pt2, tmp_path,
                                    ["--method", "inq", "--bits", "4", "--portions",
                                     "0.5,0.875,1.0", "--retrain-epochs", "3"], "auto",
                                    vectors=12)
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.01
    assert {layer.encoding for layer in net.weight_layers} == {"pow2"}


@pytest.mark.slow
def test_unseen_model_inq3_unrolled_and_folded(tmp_path):
    """A user's model and data: 3 channels, 5x5 stride-2 conv + BatchNorm, avg pool; INQ
    3-bit; the stem fully unrolled (constant shifts), the rest folded (code ROMs)."""
    model, data = make_unseen(tmp_path)
    _, net = quantize_compile_sim(
        model, tmp_path,
        ["--method", "inq", "--bits", "3", "--retrain-epochs", "4", "--abits", "7"],
        "stem=12:75,conv=2:12,head=1:8", data=data)
    assert net.layer("stem").weight_bits == 3 and net.input_format.signed


@pytest.mark.slow
def test_default_cnn_ttq_asymmetric_bit_exact(trained_default_pt2, tmp_path):
    """Asymmetric ternary (two scales P, N per layer, applied after the per-sign sums)."""
    _, net = quantize_compile_sim(
        trained_default_pt2, tmp_path,
        ["--method", "ternary", "--ternary", "ttq", "--retrain-epochs", "2", "--edge-layers",
         "same"], "conv1=16:9")
    assert all(layer.kind_data.sign_scales != (1, 1) for layer in net.weight_layers)


@pytest.mark.slow
def test_default_cnn_twn_per_channel_bit_exact(trained_default_pt2, tmp_path):
    """TWN with one α per output channel: ternary codes, α in the requant multipliers."""
    _, net = quantize_compile_sim(
        trained_default_pt2, tmp_path,
        ["--method", "ternary", "--scale", "channel", "--retrain-epochs", "2", "--edge-layers",
         "same"], "max")
    assert not net.layer("conv1").requant.is_shift_only
