"""Optimiser groups, the learning-rate schedule and the temperature clamp."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip_train.scheduler import cosine_lr as openclip_cosine_lr

import cliplab
from cliplab.train import build_optimizer, clamp_logit_scale_, learning_rate


def test_no_weight_decay_on_gains_biases_and_temperature():
    model = cliplab.create_model("tiny-ViT/8@64px")
    decay, no_decay = build_optimizer(model).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert {
        "logit_scale",
        "ln_final.weight",
        "ln_final.bias",
        "visual.class_embedding",
        "transformer.resblocks.0.attn.in_proj_bias",
        "transformer.resblocks.0.mlp.c_fc.bias",
    } <= no_decay_names
    assert all(names[id(p)].endswith(("weight", "proj", "embedding", "projection")) for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert build_optimizer(model).defaults["betas"] == (0.9, 0.98)


def test_fused_adamw_equals_the_plain_update():
    """The fused kernel (picked by default where PyTorch has it) is an optimisation, not another optimiser."""
    torch.manual_seed(0)
    plain_model = cliplab.create_model("tiny-ViT/8@32px")
    fused_model = cliplab.create_model("tiny-ViT/8@32px")
    fused_model.load_state_dict(plain_model.state_dict())
    initial = [p.detach().clone() for p in plain_model.parameters()]
    plain, fused = build_optimizer(plain_model, lr=1e-3, fused=False), build_optimizer(fused_model, lr=1e-3)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in plain_model.parameters()]
        for model, optimizer in ((plain_model, plain), (fused_model, fused)):
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad.clone()
            optimizer.step()
    for (name, a), b in zip(plain_model.named_parameters(), fused_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    # ... and both really moved: five steps of lr 1e-3 shift every weight by far more than the tolerance
    moved = min((a - start).abs().max().item() for a, start in zip(plain_model.parameters(), initial))
    assert moved > 1e-3


def test_schedule_hand_checked_values():
    assert learning_rate(0, 1e-3, warmup_steps=10, total_steps=110) == pytest.approx(1e-4)
    assert learning_rate(9, 1e-3, 10, 110) == pytest.approx(1e-3)
    assert learning_rate(60, 1e-3, 10, 110) == pytest.approx(0.5e-3)  # half way through the cosine
    assert learning_rate(110, 1e-3, 10, 110) == pytest.approx(0.0)
    assert learning_rate(500, 1e-3, 10, 110, min_lr=1e-5) == pytest.approx(1e-5)  # stays at the floor


def test_schedule_matches_openclip_trainer():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    theirs = openclip_cosine_lr(optimizer, 5e-4, warmup_length=20, steps=200)
    for step in range(200):
        assert learning_rate(step, 5e-4, 20, 200) == pytest.approx(theirs(step), rel=1e-12, abs=1e-15)


def test_temperature_is_clamped_at_100():
    model = cliplab.create_model("tiny-ViT/8@64px")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    clamp_logit_scale_(model)
    assert model.logit_scale.item() == pytest.approx(math.log(100))
