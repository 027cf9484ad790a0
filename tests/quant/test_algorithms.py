"""The algorithms: SR/R weights on the grid after every step with no float copy, BC's float copy, FP = torch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.models import create_model
from effrep_hpc.quant.algorithms import ALGORITHMS, QuantizedOptimizer, quantized_layers
from effrep_hpc.quant.quantizers import on_grid, quantize_det


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("digits_mlp", widths=[16, 12])


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)) for _ in range(n)]


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, data, check=None) -> None:
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if check is not None:
            check()


def weights(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def test_default_quantizes_every_linear_weight_in_order_and_first_last_can_stay_float() -> None:
    model = tiny_model()
    assert quantized_layers(model) == ["hidden.0.linear.weight", "hidden.1.linear.weight", "classifier.weight"]
    assert quantized_layers(model, quantize_first_last=False) == ["hidden.1.linear.weight"]
    conv = create_model("digits_cnn")
    names = quantized_layers(conv)
    assert names[0] == "features.0.conv.weight" and names[-1] == "classifier.weight" and len(names) == 4


@pytest.mark.parametrize("grid", ["paper", "midrise"])
@pytest.mark.parametrize("algorithm", ["sr", "sr-adam", "r", "r-adam"])
@pytest.mark.parametrize("bits", [1, 2])
def test_fully_quantized_weights_are_on_the_grid_after_every_step(algorithm: str, bits: int, grid: str) -> None:
    model = tiny_model()
    lr = 0.05 if "adam" not in algorithm else 0.01
    opt = QuantizedOptimizer(model, algorithm, lr=lr, bits=bits, grid=grid, momentum=0.9, seed=1)
    delta, _ = opt.grid()
    names = opt.quantized_names
    moved = []

    def check() -> None:
        params = dict(model.named_parameters())
        flat = torch.cat([params[n].detach().reshape(-1) for n in names])
        assert on_grid(flat, delta, bits, grid), "a quantized weight left the grid"
        moved.append(flat.clone())

    check()
    train_steps(model, opt, batches(8), check)
    if algorithm.startswith("sr"):
        assert not torch.equal(moved[0], moved[-1]), "SR should have moved some weights"
    assert opt.float_copy() is None
    # the only per-weight float state is the step's own gradient statistics, never a copy of the weights
    buffers = set(opt.state_dict()["buffers"])
    assert buffers == ({"exp_avg", "exp_avg_sq"} if "adam" in algorithm else {"momentum"})


@pytest.mark.parametrize("grid", ["paper", "midrise"])
def test_sr_moves_16_bit_weights_by_steps_of_a_thousandth_of_delta_on_average(grid: str) -> None:
    """One SR step of d = 1e-3 Delta on a million 16-bit weights: the mean change is -d (within 6 standard errors)."""
    delta = 2.0**-7  # levels exact in float32, so changes can be compared as floats
    layer = torch.nn.Linear(1000, 1000, bias=False)
    torch.nn.init.uniform_(layer.weight, -200.0, 200.0)  # levels out to |j| = 25600 of 32767
    opt = QuantizedOptimizer(layer, "sr", lr=1.0, bits=16, grid=grid, delta_rule="fixed", delta=delta, seed=5)
    before = layer.weight.detach().double().clone()
    layer.weight.grad = torch.full_like(layer.weight, 1e-3 * delta)  # lr 1: the step is the gradient
    opt.step()
    change = layer.weight.detach().double() - before
    n, p = change.numel(), 1e-3
    assert abs(float(change.mean()) + p * delta) < 6 * delta * (p * (1 - p) / n) ** 0.5
    assert set((change / delta).unique().tolist()) <= {-1.0, 0.0}
    assert on_grid(layer.weight.detach(), delta, 16, grid)


def test_old_states_are_midrise_and_resume_only_where_the_grids_agree() -> None:
    for bits, ok in ((1, True), (2, False)):
        state = QuantizedOptimizer(tiny_model(), "sr", lr=0.1, bits=bits, grid="midrise").state_dict()
        del state["grid"]  # as saved before there was a choice of grid
        QuantizedOptimizer(tiny_model(), "sr", lr=0.1, bits=bits, grid="midrise").load_state_dict(state)
        paper = QuantizedOptimizer(tiny_model(), "sr", lr=0.1, bits=bits, grid="paper")
        if ok:  # one bit is sign x scale on both grids
            paper.load_state_dict(state)
        else:
            with pytest.raises(ValueError, match="set quant.grid=midrise to continue it"):
                paper.load_state_dict(state)


def test_sr_keeps_no_float_copy_even_without_momentum() -> None:
    model = tiny_model()
    opt = QuantizedOptimizer(model, "sr", lr=0.1, momentum=0.0)
    train_steps(model, opt, batches(2))
    assert opt.state_dict()["buffers"] == {}
    assert opt.float_copy() is None


def test_bc_keeps_a_float_copy_behind_the_quantized_weights() -> None:
    model = tiny_model()
    opt = QuantizedOptimizer(model, "bc", lr=0.05, momentum=0.9, bits=1)
    delta, bits = opt.grid()
    limit = opt.in_grid_units(torch.ones_like(delta)).reciprocal()

    def check() -> None:
        w_r = opt.float_copy()
        assert w_r is not None
        assert torch.equal(opt.quantized_weights(), quantize_det(w_r, delta, bits)), "the model must hold Q_d(w_r)"
        assert (w_r.abs() <= limit + 1e-7).all(), "w_r is clipped to the grid's range"

    train_steps(model, opt, batches(6), check)
    w_r = opt.float_copy()
    assert not on_grid(w_r, delta, bits), "the float copy lives between the levels"
    assert "float_copy" in opt.state_dict()["buffers"]


def test_bc_accumulates_steps_too_small_to_flip_a_weight_while_r_stalls() -> None:
    """Tiny steps leave BC's deployed weights alone but move w_r until signs flip; R never moves."""
    data = batches(1) * 60
    bc_model, r_model = tiny_model(), tiny_model()
    bc = QuantizedOptimizer(bc_model, "bc", lr=2e-4, momentum=0.0)
    r = QuantizedOptimizer(r_model, "r", lr=2e-4, momentum=0.0)
    bc_start, r_start, wr_start = bc.snapshot(), r.snapshot(), bc.float_copy().clone()
    train_steps(bc_model, bc, data[:1])
    assert torch.equal(bc.quantized_weights(), bc_start), "one tiny step flips nothing"
    assert not torch.equal(bc.float_copy(), wr_start), "but it moves the float copy"
    train_steps(bc_model, bc, data[1:])
    train_steps(r_model, r, data)
    assert bc.changed_fraction(bc_start) > 0, "accumulated steps must flip some weights"
    assert r.changed_fraction(r_start) == 0, "deterministic rounding discards every small step"


def test_first_and_last_layer_stay_float_when_asked() -> None:
    model = tiny_model()
    opt = QuantizedOptimizer(model, "sr", lr=0.05, momentum=0.9, quantize_first_last=False)
    train_steps(model, opt, batches(3))
    params = dict(model.named_parameters())
    middle = params["hidden.1.linear.weight"].detach()
    assert on_grid(middle.reshape(-1), opt.deltas[0], 1)
    for name in ("hidden.0.linear.weight", "classifier.weight"):
        assert params[name].detach().unique().numel() > 2, f"{name} should be float"


@pytest.mark.parametrize("algorithm", ["fp", "fp-adam"])
def test_fp_matches_torch_sgd_and_adam(algorithm: str) -> None:
    a, b = tiny_model(), tiny_model()
    if algorithm == "fp":
        ours = QuantizedOptimizer(a, "fp", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        ref: torch.optim.Optimizer = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        ours = QuantizedOptimizer(a, "fp-adam", lr=0.01, weight_decay=1e-3)
        ref = torch.optim.Adam(b.parameters(), lr=0.01, weight_decay=1e-3)
    data = batches(6)
    train_steps(a, ours, data)
    train_steps(b, ref, data)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("algorithm", ["bc", "sr", "sr-adam"])
def test_state_dict_resumes_bit_for_bit(algorithm: str) -> None:
    """Stop after 3 steps, rebuild from the saved states, continue: same weights as never stopping."""
    data = batches(6)
    model = tiny_model()
    opt = QuantizedOptimizer(model, algorithm, lr=0.05, momentum=0.9, seed=3)
    train_steps(model, opt, data[:3])
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train_steps(model, opt, data[3:])

    other = tiny_model(seed=99)  # different init: everything must come from the saved states
    opt2 = QuantizedOptimizer(other, algorithm, lr=0.05, momentum=0.9, seed=42)
    other.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    train_steps(other, opt2, data[3:])
    for (name, pa), pb in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(pa, pb), name


def test_load_state_dict_refuses_another_algorithm() -> None:
    state = QuantizedOptimizer(tiny_model(), "bc", lr=0.1).state_dict()
    with pytest.raises(ValueError, match="algorithm='bc'"):
        QuantizedOptimizer(tiny_model(), "sr", lr=0.1).load_state_dict(state)


def test_learning_rate_schedulers_drive_the_step() -> None:
    model = tiny_model()
    opt = QuantizedOptimizer(model, "bc", lr=0.3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    seen = []
    for x, y in batches(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.3, 0.3, 0.03, 0.03])


def test_all_eight_algorithms_exist_with_their_base_step() -> None:
    assert sorted(ALGORITHMS) == sorted(["fp", "fp-adam", "bc", "bc-adam", "sr", "sr-adam", "r", "r-adam"])
    assert ALGORITHMS["sr-adam"].optimizer == "adam" and ALGORITHMS["sr-adam"].rule == "sr"
    assert not ALGORITHMS["sr"].keeps_float_copy and ALGORITHMS["bc"].keeps_float_copy


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"algorithm": "bc_adam", "lr": 0.1}, "did you mean 'bc-adam'"),
        ({"algorithm": "bc", "lr": 0.0}, "lr must be > 0"),
        ({"algorithm": "bc", "lr": 0.1, "momentum": 1.0}, "momentum must be in"),
        ({"algorithm": "bc", "lr": 0.1, "bits": 0}, "bits must be an integer"),
        ({"algorithm": "bc", "lr": 0.1, "bits": 2, "grid": "zero"}, "unknown grid 'zero'"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantizedOptimizer(tiny_model(), **kwargs)


def test_keeping_first_and_last_float_needs_a_third_layer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="leaves nothing to quantize"):
        QuantizedOptimizer(model, "bc", lr=0.1, quantize_first_last=False)
