"""Every invalid QuantSpec / CalibSpec field raises an error naming that field."""

from __future__ import annotations

import pytest

from qslaw.quant.spec import CalibSpec, QuantSpec


@pytest.mark.parametrize(
    "field,value",
    [("bits", 5), ("bits", 1), ("bits", True), ("group_size", 0), ("group_size", 1.5), ("start_layer", -2),
     ("start_layer", "5"), ("targets", ()), ("targets", ["q_proj"]), ("targets", ("",)), ("gamma_mode", "fp")],
)
def test_invalid_quant_spec_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        QuantSpec(**{field: value})


@pytest.mark.parametrize("field,value", [("method", "gptq"), ("epochs", 0), ("lr", 0.0)])
def test_invalid_calib_spec_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        CalibSpec(**{field: value})


def test_defaults_are_the_released_recipe() -> None:
    spec = QuantSpec()
    assert (spec.bits, spec.group_size, spec.start_layer, spec.qmax) == (4, 128, 5, 15)
    assert not spec.has_gamma(5) and spec.has_gamma(6)
    assert QuantSpec.from_dict(spec.to_dict()) == spec
