"""The pure-PyTorch SplineConv computes what PyG's reference kernel computes."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.conftest import IN_CI
from trainables.spline_conv import SplineConv, spline_basis

CASES = [
    # dim, kernel_size, degree, is_open_spline, aggr
    (1, 2, 1, True, "mean"),
    (1, 5, 1, False, "mean"),
    (2, [3, 4], 2, True, "mean"),
    (2, 3, 2, False, "add"),
    (3, 3, 3, True, "mean"),
    (3, [4, 3, 5], 3, [True, False, True], "max"),
    (2, 5, 1, [True, False], "mean"),
]


def _reference():
    try:
        import torch_spline_conv  # noqa: F401
        from torch_geometric.nn import SplineConv as Reference
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("torch-spline-conv (reference kernel) is not installed")
    return Reference


@pytest.mark.reference
@pytest.mark.parametrize(("dim", "kernel_size", "degree", "is_open", "aggr"), CASES)
def test_matches_reference_kernel(dim, kernel_size, degree, is_open, aggr):
    Reference = _reference()
    gen = torch.Generator().manual_seed(dim * 10 + degree)
    num_nodes, num_edges = 60, 400
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    pseudo = torch.rand(num_edges, dim, generator=gen)
    x = torch.randn(num_nodes, 12, generator=gen)
    ref = Reference(12, 5, dim=dim, kernel_size=kernel_size, degree=degree,
                    is_open_spline=is_open, aggr=aggr)
    ours = SplineConv(12, 5, dim=dim, kernel_size=kernel_size, degree=degree,
                      is_open_spline=is_open, aggr="sum" if aggr == "add" else aggr)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())

    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_ref = ref(x_ref, edge_index, pseudo)
    out_ours = ours(x_ours, edge_index, pseudo)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_ours.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.lin.weight.grad, ref.lin.weight.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.reference
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_basis_matches_reference(degree):
    _reference()
    from torch_spline_conv import spline_basis as reference_basis

    pseudo = torch.rand(200, 2, generator=torch.Generator().manual_seed(degree))
    kernel_size = torch.tensor([4, 5])
    is_open = torch.tensor([1, 0], dtype=torch.uint8)
    basis, index = spline_basis(pseudo, kernel_size, is_open, degree)
    ref_basis, ref_index = reference_basis(pseudo, kernel_size, is_open, degree)
    torch.testing.assert_close(basis, ref_basis)
    assert torch.equal(index, ref_index)


def test_basis_sums_to_one():
    """B-spline bases are a partition of unity for every edge."""
    pseudo = torch.rand(100, 3)
    for degree in (1, 2, 3):
        basis, _ = spline_basis(pseudo, torch.tensor([5, 5, 5]), torch.tensor([1, 1, 1]), degree)
        torch.testing.assert_close(basis.sum(dim=1), torch.ones(100))


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="degree must be 1, 2 or 3, got 4"):
        SplineConv(4, 4, dim=1, kernel_size=2, degree=4)
    with pytest.raises(ValueError, match="aggr must be one of"):
        SplineConv(4, 4, dim=1, kernel_size=2, aggr="median")
    with pytest.raises(ValueError, match="need 2 entries"):
        SplineConv(4, 4, dim=2, kernel_size=[2, 3, 4])


def test_input_dropout_matches_dropout_in_distribution():
    from trainables.models import input_dropout

    torch.manual_seed(0)
    x = (torch.rand(400, 300) < 0.05).float() * torch.rand(400, 300)
    out = input_dropout(x, 0.5, training=True)
    assert torch.all(out[x == 0] == 0)
    kept = out[x != 0] != 0
    assert 0.45 < kept.float().mean() < 0.55
    torch.testing.assert_close(out[x != 0][kept], x[x != 0][kept] * 2)
    assert input_dropout(x, 0.5, training=False) is x
