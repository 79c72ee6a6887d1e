"""The fidelity check every runner shares: reference data as npz, outputs compared within a tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Fidelity

RTOL = 1e-3
ATOL_FRACTION = 1e-4  # of the reference's largest magnitude
# A model that computes on quantized integers: the reference (an unoptimised run: QuantizeLinear,
# DequantizeLinear and a float kernel between) and the device's fused integer kernels (QLinearConv) round
# differently, by a step of the 256 an 8-bit range has in each layer, and the steps add up. Eight steps of
# the output's range; a wrong model or input is off by the range itself.
QUANTIZED_ATOL_FRACTION = 2 ** -5
QUANTIZED = ("int8", "int4")


def tolerance(precision: str | None) -> dict[str, float]:
    """`compare`'s tolerances for a model of this precision (`onnx_model.precision`)."""
    return {"atol_fraction": QUANTIZED_ATOL_FRACTION if precision in QUANTIZED else ATOL_FRACTION}


def load_reference(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reference npz → (inputs, outputs) keyed by tensor name; arrays keep batch 1 as stored."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            inputs = {k[len("input:"):]: npz[k] for k in npz.files if k.startswith("input:")}
            outputs = {k[len("output:"):]: npz[k] for k in npz.files if k.startswith("output:")}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"reference data {Path(path).name} is not a readable npz: {exc}") from None
    return inputs, outputs


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], rtol: float = RTOL,
            atol_fraction: float = ATOL_FRACTION) -> Fidelity:
    worst, tolerance, detail = 0.0, 0.0, ""
    for name, ref in reference.items():
        got = outputs.get(name)
        if got is None or got.shape != ref.shape:
            return Fidelity(True, False, float("inf"), 0.0,
                            f"output {name}: shape {None if got is None else got.shape} != {ref.shape}")
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        atol = atol_fraction * max(1.0, float(np.abs(ref64).max(initial=0.0)))
        err = np.abs(got64 - ref64)
        excess = err - (atol + rtol * np.abs(ref64))
        worst = max(worst, float(err.max(initial=0.0)))
        tolerance = max(tolerance, atol)
        if not np.all(np.isfinite(got64)) or np.any(excess > 0):
            detail = f"output {name}: max abs error {float(err.max()):.3g} exceeds rtol {rtol} + atol {atol:.3g}"
            return Fidelity(True, False, worst, tolerance, detail)
    return Fidelity(True, True, worst, tolerance, "")
