"""The digits default CNN as the benchmarks build it: trained (seed 0), exported and quantized
to ``fixed`` w8/a8, the same network ``hwquant demo`` starts from."""

from pathlib import Path

__all__ = ["quantized_default"]


def quantized_default(work):
    """Train, export (``work/model.pt2``) and quantize the digits default; the network."""
    import torch

    from hwquant.data import calibration_split, load_dataset
    from hwquant.frontend import load_model
    from hwquant.quant.fixed import quantize_fixed
    from hwquant.train import default_model, export_model, train

    work = Path(work)
    ds = load_dataset("digits")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
    train(model, ds, seed=0, progress=False)
    export_model(model, torch.tensor(ds.x_test[:2]), work / "model.pt2")
    return quantize_fixed(load_model(work / "model.pt2"), calibration_split(ds), wbits=8,
                          abits=8, metadata={"dataset": {"name": "digits"}})
