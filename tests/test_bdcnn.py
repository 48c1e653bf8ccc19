"""The binary weight decomposition of the ``bdcnn`` kind (:mod:`hwquant.bdcnn`)."""

import numpy as np
import pytest

from hwquant.bdcnn import (
    DecompositionError,
    decompose,
    nearest_patterns,
    quantize_coefficients,
    sign_patterns,
)


def test_sign_patterns_order():
    b = sign_patterns(3)
    assert b.shape == (8, 3)
    assert b[0].tolist() == [-1, -1, -1] and b[1].tolist() == [-1, -1, 1]
    for j in range(8):  # basis a is +1 where bit K-1-a of j is set
        assert [(j >> (2 - a)) & 1 for a in range(3)] == ((b[j] + 1) // 2).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_nearest_patterns_is_the_exact_m_step(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    w = rng.normal(size=(3, 50))
    c = rng.normal(size=(3, k))
    if seed % 3 == 0:
        c[:, -1] = -c[:, 0]  # duplicate codebook values
    j = nearest_patterns(w, c)
    v = c @ sign_patterns(k).T
    dist = (w[:, :, None] - v[:, None, :]) ** 2
    np.testing.assert_array_equal(np.take_along_axis(dist, j[:, :, None], 2)[..., 0],
                                  dist.min(axis=2))


def test_exact_decomposition_is_found():
    rng = np.random.default_rng(1)
    m = rng.choice([-1.0, 1.0], size=(4, 64, 3))
    c = np.array([1.0, 0.5, 0.25])
    w = np.einsum("ndk,k->nd", m, c)
    dec = decompose(w, 3, restarts=5, seed=0)
    np.testing.assert_allclose(dec.approximation(), w, atol=1e-9)
    assert dec.signs().shape == (4, 3, 64)


def test_error_falls_with_more_bases():
    w = np.random.default_rng(2).normal(size=(8, 288))
    errs = [decompose(w, k, restarts=3).error.sum() / (w ** 2).sum() for k in (2, 4, 6)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01  # the fixed-point rule reaches ~0.001 at K = 6, D = 288


def test_bad_basis_and_memory():
    w = np.ones((2, 9))
    with pytest.raises(DecompositionError, match=r"^Layer 'conv1': K=5 bases must be fewer "
                                                 r"than the 5 weights"):
        decompose(np.ones((2, 5)), 5, name="conv1")
    with pytest.raises(DecompositionError, match=r"^Basis count K must be an integer in 1\.\.8"):
        decompose(w, 0)
    with pytest.raises(DecompositionError, match=r"^Layer 'fc': decomposing 2 neurons of 9 "
                                                 r"weights at K=2 needs about"):
        decompose(w, 2, name="fc", memory_limit=100)


def test_quantize_coefficients():
    c = np.array([[0.5, -0.26], [0.1, 0.0]])  # 0.5 * 2**8 = 128 > 127: f = 7
    q, f = quantize_coefficients(c, 8)
    assert f == 7 and q.tolist() == [[64, -33], [13, 0]]
    assert np.abs(q).max() <= 127
