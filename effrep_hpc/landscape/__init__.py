"""Loss-landscape math (Li et al., NeurIPS 2018): directions, grids and fast evaluation of grid points.

Pure functions on modules and tensors: no files, no communication, no printing.
"""

from __future__ import annotations

from effrep_hpc.landscape.directions import (
    BIAS_MODES,
    NORMALIZATIONS,
    check_bias_mode,
    check_compatible,
    check_normalization,
    combine,
    direction_hash,
    direction_layout,
    flatten_directions,
    normalize_direction,
    parameter_weights,
    plane_directions,
    point_weights,
    random_direction,
    same_direction,
    set_weights,
    target_direction,
    unflatten_directions,
    weights_hash,
)
from effrep_hpc.landscape.evaluate import (
    BN_POLICIES,
    LOSSES,
    EvalData,
    evaluate_points,
    per_sample_loss,
    plan_points_per_pass,
    subset,
)
from effrep_hpc.landscape.grid import grid_points, grid_shape, make_axis, make_tiles, parse_axis

__all__ = [
    "BIAS_MODES",
    "BN_POLICIES",
    "LOSSES",
    "NORMALIZATIONS",
    "EvalData",
    "check_bias_mode",
    "check_compatible",
    "check_normalization",
    "combine",
    "direction_hash",
    "direction_layout",
    "evaluate_points",
    "flatten_directions",
    "grid_points",
    "grid_shape",
    "make_axis",
    "make_tiles",
    "normalize_direction",
    "parameter_weights",
    "parse_axis",
    "per_sample_loss",
    "plan_points_per_pass",
    "plane_directions",
    "point_weights",
    "random_direction",
    "same_direction",
    "set_weights",
    "subset",
    "target_direction",
    "unflatten_directions",
    "weights_hash",
]
