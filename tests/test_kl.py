"""Bound arithmetic: check values by hand and from the issue, inverses, and monotonicity properties."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from genlab.bounds.kl import (BoundError, all_bounds, catoni_bound, catoni_grid_bound, geometric_grid,
                              kl_bernoulli, kl_bound, kl_inverse_lower, kl_inverse_upper, mcallester_bound,
                              occam_bound)

LN2 = math.log(2)


def test_check_values_from_the_issue():
    # Occam kl bound, delta = 0.05
    assert occam_bound(0.02, 3000, 60000, 0.05) == pytest.approx(0.080634, abs=5e-7)
    assert occam_bound(0.0415, 4574, 60000, 0.05) == pytest.approx(0.139285, abs=5e-7)
    # Langford-Seeger with ln(2 sqrt(n) / delta)
    assert kl_bound(0.02, 3000 * LN2, 60000, 0.05) == pytest.approx(0.080760, abs=5e-7)
    # the anchor's Catoni-over-a-grid figure for the MNIST row is 13.98%: a fine declared grid is at least as
    # tight, and never tighter than the kl bound at the full delta (Catoni is a relaxation of it)
    catoni, _ = catoni_grid_bound(0.0415, 4574 * LN2, 60000, 0.05)
    assert 0.139285 < catoni <= 0.1398


def test_kl_by_hand():
    assert kl_bernoulli(0.5, 0.5) == 0.0
    assert kl_bernoulli(0.0, 0.5) == pytest.approx(math.log(2))
    assert kl_bernoulli(0.1, 0.3) == pytest.approx(0.1 * math.log(1 / 3) + 0.9 * math.log(0.9 / 0.7))
    assert kl_bernoulli(0.2, 0.0) == math.inf


def test_closed_form_inverses_at_zero_error():
    # kl(0 || p) = -ln(1 - p)  =>  p = 1 - exp(-c)
    for c in (1e-4, 0.01, 0.5, 3.0):
        assert kl_inverse_upper(0.0, c) == pytest.approx(-math.expm1(-c), abs=2e-12)
        assert kl_inverse_upper(0.0, c) >= -math.expm1(-c)   # rounded outwards
    # kl(1 || p) = -ln p  =>  lower inverse p = exp(-c)
    assert kl_inverse_lower(1.0, 0.5) == pytest.approx(math.exp(-0.5), abs=2e-12)


def test_inverse_is_the_boundary():
    for q in (0.01, 0.2, 0.7):
        for c in (1e-3, 0.05, 0.4):
            up, lo = kl_inverse_upper(q, c), kl_inverse_lower(q, c)
            assert lo <= q <= up
            if up < 1:
                assert kl_bernoulli(q, up) == pytest.approx(c, rel=1e-8)
            if lo > 0:
                assert kl_bernoulli(q, lo) == pytest.approx(c, rel=1e-8)


def test_catoni_by_hand():
    q, kl, n, delta, g = 0.05, 100.0, 10000, 0.05, 2.0
    expected = (1 - math.exp(-g * q - (kl + math.log(1 / delta)) / n)) / (1 - math.exp(-g))
    assert catoni_bound(q, kl, n, delta, g) == pytest.approx(expected, rel=1e-12)
    grid = geometric_grid(0.5, 8.0, 5)
    assert grid == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0])
    best, gamma = catoni_grid_bound(q, kl, n, delta, grid)
    assert best == min(catoni_bound(q, kl, n, delta / 5, x) for x in grid)


def test_mcallester_by_hand():
    q, kl, n, delta = 0.1, 50.0, 1000, 0.1
    assert mcallester_bound(q, kl, n, delta) == pytest.approx(
        q + math.sqrt((kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n)))


@pytest.mark.parametrize("call", [
    lambda: occam_bound(-0.1, 10, 100, 0.05),
    lambda: occam_bound(1.5, 10, 100, 0.05),
    lambda: occam_bound(0.1, -1, 100, 0.05),
    lambda: occam_bound(0.1, float("nan"), 100, 0.05),
    lambda: occam_bound(0.1, 10, 0, 0.05),
    lambda: occam_bound(0.1, 10, 10.5, 0.05),
    lambda: kl_bound(0.1, 10, 100, 0.0),
    lambda: kl_bound(0.1, 10, 100, 1.0),
    lambda: catoni_bound(0.1, 10, 100, 0.05, 0.0),
    lambda: catoni_grid_bound(0.1, 10, 100, 0.05, []),
])
def test_invalid_input_is_refused(call):
    with pytest.raises(BoundError):
        call()


def test_error_message_names_the_field():
    with pytest.raises(BoundError, match="delta must lie in"):
        occam_bound(0.1, 10, 100, 2.0)


BOUNDS = {
    "occam": lambda q, c, n: occam_bound(q, c, n, 0.05),
    "kl": lambda q, c, n: kl_bound(q, c, n, 0.05),
    "mcallester": lambda q, c, n: mcallester_bound(q, c, n, 0.05),
    "catoni": lambda q, c, n: catoni_grid_bound(q, c, n, 0.05)[0],
}
errors = st.floats(0.0, 1.0)
complexities = st.floats(0.0, 1e5)
sizes = st.integers(1, 10 ** 6)


@pytest.mark.parametrize("name", sorted(BOUNDS))
@settings(max_examples=60, deadline=None)
@given(q=errors, c=complexities, n=sizes, dq=st.floats(0.0, 0.5), dc=st.floats(0.0, 1e3), dn=st.integers(0, 10 ** 5))
def test_monotone_and_in_range(name, q, c, n, dq, dc, dn):
    bound = BOUNDS[name]
    value = bound(q, c, n)
    assert q - 1e-12 <= value <= 1.0
    assert bound(min(1.0, q + dq), c, n) >= value - 1e-10          # more error, larger bound
    assert bound(q, c + dc, n) >= value - 1e-10                    # more complexity, larger bound
    assert bound(q, c, n + dn) <= value + 1e-10                    # more data, smaller bound


def test_all_bounds_keys_and_order():
    values = all_bounds(0.02, 3000, 60000, 0.05)
    assert set(values) == {"occam_kl", "langford_seeger", "mcallester", "catoni_grid", "catoni_gamma"}
    assert values["occam_kl"] <= values["langford_seeger"] <= values["mcallester"]
