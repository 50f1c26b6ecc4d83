
import numpy as np
import pytest
import torch

from hybridlib.combiners import COMBINERS, MGDA, CAGrad, GradVac, PCGrad, Sum, make_combiner


def grads(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def gram(g):
    return g @ g.T


def test_sum():
    g = grads([1, 2, 0], [0, 1, -3])
    update, w = Sum()(g)
    assert update.tolist() == [1, 3, -3] and w.tolist() == [1, 1]
    assert Sum(0.25)(g)[0].tolist() == [0.25, 1.25, -2.25]


def test_pcgrad_equals_sum_without_conflict():
    g = grads([1.0, 2.0, 0.5], [0.5, 1.0, -1.0])  # dot = 1.5 >= 0
    np.testing.assert_allclose(PCGrad()(g)[0], g.sum(0))


def test_pcgrad_projections_are_orthogonal_to_the_other_original():
    g = grads([1.0, 1.0, 0.0], [-1.0, 0.5, 2.0])  # dot = -0.5 < 0
    C = PCGrad().coefficients(gram(g))
    g1, g2 = C @ g
    assert abs(float(g1 @ g[1])) < 1e-12 and abs(float(g2 @ g[0])) < 1e-12
    # by hand: g1' = g1 - (g1.g2 / |g2|^2) g2, g2' = g2 - (g2.g1 / |g1|^2) g1
    np.testing.assert_allclose(g1, g[0] + 0.5 / 5.25 * g[1])
    np.testing.assert_allclose(g2, g[1] + 0.5 / 2 * g[0])
    np.testing.assert_allclose(PCGrad()(g)[0], g1 + g2)


def test_mgda_two_objectives_is_the_closed_form_min_norm_point():
    g = grads([2.0, 0.0, 1.0], [0.0, 1.0, -1.0])
    d, w = MGDA()(g)
    gamma = float(((g[1] - g[0]) @ g[1]) / ((g[0] - g[1]) @ (g[0] - g[1])))
    np.testing.assert_allclose(d, gamma * g[0] + (1 - gamma) * g[1])
    grid = np.linspace(0, 1, 100001)
    norms = [np.linalg.norm(t * g[0].numpy() + (1 - t) * g[1].numpy()) for t in grid]
    assert float(d.norm()) == pytest.approx(min(norms), abs=1e-6)
    # Frank-Wolfe (the T > 2 path) agrees on a two-objective problem
    np.testing.assert_allclose(MGDA.weights(MGDA(iterations=5000), gram(torch.cat([g, g[:1]]))).numpy()[[0, 2]].sum(),
                               w[0], atol=1e-3)


def test_cagrad_equals_a_hand_computation():
    g = grads([1.0, 0.0, 0.5], [-0.5, 1.0, 0.0])
    c = 0.5
    g0 = g.mean(0).numpy()
    G = g.numpy()
    # brute-force the inner problem over the 2-simplex
    best = min(np.linspace(0, 1, 200001), key=lambda x: (x * G[0] + (1 - x) * G[1]) @ g0
               + c * np.linalg.norm(g0) * np.linalg.norm(x * G[0] + (1 - x) * G[1]))
    gw = best * G[0] + (1 - best) * G[1]
    expected = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c ** 2)
    np.testing.assert_allclose(CAGrad(c)(g)[0].numpy(), expected, atol=1e-6)
    # c = 0 is plain gradient descent on the average
    np.testing.assert_allclose(CAGrad(0.0)(g)[0].numpy(), g0, atol=1e-12)


def test_gradvac_equals_a_hand_computation_and_reaches_its_target():
    g = grads([1.0, 0.2, 0.0], [-0.6, 1.0, 0.3])
    gv = GradVac(beta=0.5)
    gv.target = torch.tensor([[0.0, 0.3], [0.3, 0.0]], dtype=torch.float64)
    C = gv.coefficients(gram(g))
    a, b = g[0].numpy(), g[1].numpy()
    phi, hat = a @ b / np.linalg.norm(a) / np.linalg.norm(b), 0.3
    a_new = a + np.linalg.norm(a) * (hat * np.sqrt(1 - phi ** 2) - phi * np.sqrt(1 - hat ** 2)) / (
        np.linalg.norm(b) * np.sqrt(1 - hat ** 2)) * b
    np.testing.assert_allclose((C @ g)[0].numpy(), a_new, atol=1e-12)
    assert a_new @ b / np.linalg.norm(a_new) / np.linalg.norm(b) == pytest.approx(hat)  # the point of the rule
    assert float(gv.target[0, 1]) == pytest.approx(0.5 * 0.3 + 0.5 * phi)


@pytest.mark.parametrize("name", list(COMBINERS))
@pytest.mark.parametrize("case", ["zero", "one zero", "parallel", "opposite"])
def test_degenerate_gradients_give_finite_updates(name, case):
    g = {"zero": grads([0, 0, 0], [0, 0, 0]), "one zero": grads([0, 0, 0], [1, 2, 3]),
         "parallel": grads([1, 2, 3], [2, 4, 6]), "opposite": grads([1, 2, 3], [-1, -2, -3])}[case]
    for _ in range(3):  # stateful combiners (GradVac) too
        update, w = make_combiner(name)(g)
        assert torch.isfinite(update).all() and torch.isfinite(w).all()


def test_unknown_combiner_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown combiner 'adam'; valid: sum, pcgrad, gradvac, cagrad, mgda"):
        make_combiner("adam")


def test_more_than_two_objectives():
    rng = np.random.default_rng(0)
    g = torch.tensor(rng.normal(size=(4, 6)))
    for name in COMBINERS:
        update, w = make_combiner(name)(g)
        np.testing.assert_allclose(update, w @ g)
    C = PCGrad(seed=1).coefficients(gram(g))
    assert C.shape == (4, 4) and all(np.isfinite(C.numpy()).ravel())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("name", list(COMBINERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_update_and_weights_stay_on_the_gradients_device_and_dtype(name, dtype, device):
    """The update is computed where the gradients are, in their precision; float32 and float64 agree."""
    g = torch.tensor([[1.0, 2.0, -1.0, 0.5], [-2.0, 0.5, 1.0, 1.0]], dtype=dtype, device=device)
    update, w = make_combiner(name)(g)
    assert (update.device, update.dtype, w.device, w.dtype) == (g.device, dtype, g.device, dtype)
    reference, _ = make_combiner(name)(g.cpu().double())
    np.testing.assert_allclose(update.cpu().double().numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)


def test_a_new_combiner_is_one_registered_class_with_its_parameters():
    """Adding a combiner touches its module only: the strategy name parses, its number is checked against the
    range it declares, the profile's default fills it, and the error messages list it."""
    from hybridlib.combiners import COMBINERS, Combiner, register
    from hybridlib.config import ConfigError, load_profile, override
    from hybridlib.registry import Param
    from hybridlib.strategy import Strategy, allowed

    @register("larger")
    class Larger(Combiner):
        """The larger gradient, scaled by k."""
        params = {"k": Param(0, 4, lo_open=True, positional=True, doc="scale")}

        def __init__(self, k: float = 1.0):
            self.k = k

        def weights(self, gram):
            return self.k * torch.nn.functional.one_hot(gram.diagonal().argmax(), len(gram)).double()

    try:
        s = Strategy.parse("larger(k=2)")
        assert s == Strategy.parse("larger(2)") and "larger[(k)]" in allowed()
        assert (s.family, str(s), s.run_name(1)) == ("mixed", "larger(2)", "larger-2-s1")
        profile = override(load_profile("smoke"), strategies=["xx", "larger", "larger(2)"])
        assert [str(x) for x in profile.strategies] == ["xx", "larger", "larger(2)"]
        update, w = s.combiner(profile)(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        assert w.tolist() == [0.0, 2.0] and update.tolist() == [0.0, 6.0]
        with pytest.raises(ConfigError, match=r"strategy 'larger\(5\)': k=5 is outside \(0, 4\]"):
            Strategy.parse("larger(5)")
    finally:
        del COMBINERS["larger"]
