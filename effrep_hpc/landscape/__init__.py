"""Loss-landscape math (Li et al., NeurIPS 2018): directions, grids, fast evaluation of grid points, curvature.

Pure functions on modules and tensors: no files, no communication, no printing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from effrep_hpc.registry import lazy_exports

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from effrep_hpc.landscape.curvature import (  # noqa: F401
        DEFAULT_HVP,
        EIGEN_METHODS,
        HVP_MODES,
        EigenResult,
        HessianOperator,
        SpectralDensity,
        TraceResult,
        check_eigen_args,
        curvature_parameters,
        dense_hessian,
        exact_trace,
        gaussian_density,
        hessian_eigenvalues,
        hutchinson_trace,
        spectral_density,
    )
    from effrep_hpc.landscape.directions import (  # noqa: F401
        BIAS_MODES,
        NORMALIZATIONS,
        RUNNING_STATS,
        check_bias_mode,
        check_compatible,
        check_normalization,
        combine,
        direction_hash,
        direction_layout,
        flatten_directions,
        is_running_stat,
        normalize_direction,
        parameter_weights,
        plane_directions,
        point_weights,
        random_direction,
        running_stats,
        same_direction,
        set_weights,
        target_direction,
        unflatten_directions,
        weights_hash,
        widest_precision,
    )
    from effrep_hpc.landscape.evaluate import (  # noqa: F401
        BN_POLICIES,
        BN_STATISTICS,
        LOSSES,
        EvalData,
        bn_statistics,
        evaluate_points,
        per_sample_loss,
        plan_points_per_pass,
        subset,
    )
    from effrep_hpc.landscape.grid import (  # noqa: F401
        grid_points,
        grid_shape,
        make_axis,
        make_tiles,
        parse_axis,
    )


# name -> module; loaded on first use, so the numpy-only `effrep_hpc.landscape.grid` imports without torch
_LAZY = {
    'BIAS_MODES': 'effrep_hpc.landscape.directions',
    'BN_POLICIES': 'effrep_hpc.landscape.evaluate',
    'BN_STATISTICS': 'effrep_hpc.landscape.evaluate',
    'DEFAULT_HVP': 'effrep_hpc.landscape.curvature',
    'EIGEN_METHODS': 'effrep_hpc.landscape.curvature',
    'EigenResult': 'effrep_hpc.landscape.curvature',
    'EvalData': 'effrep_hpc.landscape.evaluate',
    'HVP_MODES': 'effrep_hpc.landscape.curvature',
    'HessianOperator': 'effrep_hpc.landscape.curvature',
    'LOSSES': 'effrep_hpc.landscape.evaluate',
    'NORMALIZATIONS': 'effrep_hpc.landscape.directions',
    'RUNNING_STATS': 'effrep_hpc.landscape.directions',
    'SpectralDensity': 'effrep_hpc.landscape.curvature',
    'TraceResult': 'effrep_hpc.landscape.curvature',
    'bn_statistics': 'effrep_hpc.landscape.evaluate',
    'check_bias_mode': 'effrep_hpc.landscape.directions',
    'check_compatible': 'effrep_hpc.landscape.directions',
    'check_eigen_args': 'effrep_hpc.landscape.curvature',
    'check_normalization': 'effrep_hpc.landscape.directions',
    'combine': 'effrep_hpc.landscape.directions',
    'curvature_parameters': 'effrep_hpc.landscape.curvature',
    'dense_hessian': 'effrep_hpc.landscape.curvature',
    'direction_hash': 'effrep_hpc.landscape.directions',
    'direction_layout': 'effrep_hpc.landscape.directions',
    'evaluate_points': 'effrep_hpc.landscape.evaluate',
    'exact_trace': 'effrep_hpc.landscape.curvature',
    'flatten_directions': 'effrep_hpc.landscape.directions',
    'gaussian_density': 'effrep_hpc.landscape.curvature',
    'grid_points': 'effrep_hpc.landscape.grid',
    'grid_shape': 'effrep_hpc.landscape.grid',
    'hessian_eigenvalues': 'effrep_hpc.landscape.curvature',
    'hutchinson_trace': 'effrep_hpc.landscape.curvature',
    'is_running_stat': 'effrep_hpc.landscape.directions',
    'make_axis': 'effrep_hpc.landscape.grid',
    'make_tiles': 'effrep_hpc.landscape.grid',
    'normalize_direction': 'effrep_hpc.landscape.directions',
    'parameter_weights': 'effrep_hpc.landscape.directions',
    'parse_axis': 'effrep_hpc.landscape.grid',
    'per_sample_loss': 'effrep_hpc.landscape.evaluate',
    'plan_points_per_pass': 'effrep_hpc.landscape.evaluate',
    'plane_directions': 'effrep_hpc.landscape.directions',
    'point_weights': 'effrep_hpc.landscape.directions',
    'random_direction': 'effrep_hpc.landscape.directions',
    'running_stats': 'effrep_hpc.landscape.directions',
    'same_direction': 'effrep_hpc.landscape.directions',
    'set_weights': 'effrep_hpc.landscape.directions',
    'spectral_density': 'effrep_hpc.landscape.curvature',
    'subset': 'effrep_hpc.landscape.evaluate',
    'target_direction': 'effrep_hpc.landscape.directions',
    'unflatten_directions': 'effrep_hpc.landscape.directions',
    'weights_hash': 'effrep_hpc.landscape.directions',
    'widest_precision': 'effrep_hpc.landscape.directions',
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
