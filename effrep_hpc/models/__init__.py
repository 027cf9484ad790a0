"""Model zoo: registered constructors whose architecture is data (per-layer widths).

Build by name::

    model = create_model("resnet56", inner_widths=[...])   # num_classes defaults to the registered one
    spec = model_spec("resnet56")                          # .input_shape (3, 32, 32), .num_classes 10
    flops, params = count_flops_params(model, spec.input_shape)

Families (one file each): ``vgg`` (vgg9, vgg16, digits_cnn, digits_vgg, mnist1d_net), ``resnet``
(resnet20/32/44/56/110 and ``*_noshort``, wrn56_2/4/8 and ``*_noshort``, resnet18/34), ``mlp``
(digits_mlp).

Architecture as data (what a pruning tool needs)
------------------------------------------------
Every model is a ``ZooModel`` with ``arch_name`` (its registered name) and ``arch`` (a JSON-serialisable
dict of constructor kwargs, ``num_classes`` included), so ``create_model(m.arch_name, **m.arch)`` rebuilds
it exactly: save a pruned model as ``arch`` + ``state_dict``, never as a pickled module. The kwargs:

- VGG family: ``widths`` (out-channels of each conv, in order; pool positions are fixed by the variant)
  and ``hidden`` (width of the BN'd hidden FC layer, 0 when the variant has none).
- CIFAR ResNets: ``inner_widths`` (one per block: out-channels of the block's first conv) and
  ``stage_widths`` (one per stage). ImageNet ResNets: the same two keys, four stages.
- MLP: ``widths`` (one per hidden layer).

Layers: each conv with its BN is a ``ConvBN`` unit (``.conv``, ``.bn``; hidden FC layers are ``LinearBN``
units with ``.linear``, ``.bn``). Conv layers have no bias (the BN shifts). ``m.conv_bn_pairs()`` lists
``(unit name, conv, bn)`` in forward order (a residual block's projection shortcut comes after its conv2);
``m.linear_bn_pairs()`` does the same for hidden FC layers. ``m.get_submodule(name)`` returns the unit.

Channel dependencies: ``m.layer_io()`` lists every weight layer (ConvBN/LinearBN units and the final
``nn.Linear``) as ``LayerIO(name, in_slot, out_slot, in_repeat)``, where a slot is ``(arch key, index)``,
e.g. ``("widths", 3)``, ``("inner_widths", 7)``, ``("hidden", None)``, and ``None`` means a fixed width
(input channels, classes). Pruning the filters of slot S means: cut the out-channels (conv weight rows and
BN entries) of every layer whose ``out_slot`` is S, cut the matching in-channels of every layer whose
``in_slot`` is S (for ``in_repeat`` > 1, a flattened map: channel c owns features
``c*in_repeat:(c+1)*in_repeat``), set the arch entry to the new width and rebuild. Layers that share a
slot must be cut together.

- VGG: slot ``("widths", i)`` is conv i alone; the first FC reads the last conv's flattened map.
- ResNets: ``("inner_widths", i)`` is written only by block i's ``conv1`` and read only by its ``conv2``;
  ``m.blocks()`` lists ``(name, BasicBlock)`` and ``m.block_first_convs()`` the names of those conv1
  units, aligned with ``inner_widths``. This is what Li et al. prune in ResNets. ``("stage_widths", s)`` is
  written by the stem (s = 0), every conv2 of stage s and the stage's projection shortcut, because the
  residual additions sum them channel by channel. With option-A (zero-padding) shortcuts the identity also
  carries stage s-1 channel c into stage s channel c, so CIFAR stage widths are not independent slots;
  change them to define a new architecture, not by filter surgery (the pruning paper does not prune them).

Weights: convs Kaiming-normal (fan_out, ReLU), BN weight 1 and bias 0, linears torch's default init.

Cost: ``count_flops_params(model, input_shape)`` (MACs of conv + linear layers for one sample, all params;
see ``flops`` for how this matches the papers), ``layer_flops`` for the per-layer split, ``count_params``.
Build under ``torch.device("meta")`` to count a large net without allocating it.
"""

from __future__ import annotations

from effrep_hpc.models import mlp, resnet, vgg  # noqa: F401  (importing registers the constructors)
from effrep_hpc.models.factory import ModelSpec, create_model, list_models, model_spec, rebuild_model, register_model
from effrep_hpc.models.flops import count_flops_params, count_params, layer_flops
from effrep_hpc.models.layers import ConvBN, LayerIO, LinearBN, ZooModel

__all__ = [
    "ConvBN",
    "LayerIO",
    "LinearBN",
    "ModelSpec",
    "ZooModel",
    "count_flops_params",
    "count_params",
    "create_model",
    "layer_flops",
    "list_models",
    "model_spec",
    "rebuild_model",
    "register_model",
]
