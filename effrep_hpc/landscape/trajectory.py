"""PCA directions of an optimizer's path, and the path's projection onto them (Li et al., NeurIPS 2018, sec. 7).

Random directions are nearly orthogonal to the path training takes, so the paper draws the path on the
plane of the first principal components of the matrix ``X`` whose row ``i`` is ``w_i - w_ref``: snapshot
``i``'s weights minus the reference weights (the final epoch's, or any chosen), flattened over the
*covered* parameters. Pure functions on tensors: no files, no printing.

- *Covered parameters.* ``bias="ignore"`` (default, as the paper): the tensors of two or more dimensions
  (conv and linear weights), the tensors a filter-normalized direction moves with ``landscape.bias_bn=
  "ignore"``; ``"include"``: every parameter. BN running statistics are never covered. A direction comes
  back for *every* parameter (zeros on the uncovered ones), so it fits our direction format and the scan.
- *Centring.* The original code fits ``sklearn.decomposition.PCA`` to ``X``, which subtracts the column
  means first: the components span the path's variation about its mean. ``center=True`` (default) does
  the same, so ``explained_variance_ratio``, ``explained_variance`` and ``singular_values`` are those
  sklearn reports on the same matrix, and the paper's percentages are comparable. ``center=False`` gives
  the best plane through ``w_ref`` itself (ratios of the uncentred sum of squares). Either way the
  directions pass through ``w_ref``: the scan's plane is ``w_ref + a*dx + b*dy``, and ``w_ref`` is at (0, 0).
- *No P x P matrix.* When the N x P float64 matrix is small (a quarter of ``max_bytes``) it is held and
  factored by SVD. Otherwise the N x N Gram matrix ``X X^T`` is accumulated in float64 over blocks of
  parameters, one read of the snapshots per block with only an N x block slice of ``X`` held, then
  double-centred and eigen-decomposed; one more read forms the directions ``X_c^T u / s``. Memory:
  ``max_bytes + 8 (N^2 + k P)`` plus one snapshot. Snapshots are given as a sequence, so they can be read
  several times: ``LazySnapshots(load, n)`` loads snapshot ``i`` from wherever it lives on each access.
- *Signs.* A principal direction's sign is arbitrary; ours is chosen so that the first snapshot off an
  axis (usually the initial weights) has a positive coordinate: the path runs from the positive
  quadrant to the origin.
- *Projection.* ``project_path`` solves the k x k normal equations of ``D c = w - w_ref`` over the
  covered parameters (least squares: the directions need be neither orthogonal nor of unit norm, e.g.
  ones imported from the original code or rescaled) and reports the residual norm ``||w - w_ref - D c||``
  per snapshot, so a reader sees how far the path leaves the plane. ``w_ref`` projects to exactly 0.

Pruned models (snapshots of the pruned architecture) and quantized runs (the float copy, or the grid
weights, whichever snapshots are given) need nothing special: snapshots are just tensors of the
reference's names and shapes; any other architecture is refused with the first differing name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence, overload

import numpy as np
import torch
from torch import Tensor, nn

from effrep_hpc.landscape.directions import check_bias_mode, check_compatible, is_running_stat
from effrep_hpc.registry import unknown_name_message

Weights = Mapping[str, Tensor]
METHODS: tuple[str, ...] = ("auto", "svd", "gram")
DEFAULT_MAX_BYTES = 512 * 2**20  # the N x block slice of the difference matrix: 300 ResNet-56 snapshots peak < 1 GB
# An eigenvalue below this fraction of the largest is rounding, not a dimension of the path.
_RANK_TOL = 1e-12


class LazySnapshots(Sequence[Weights]):
    """``n`` snapshots produced by ``load(i)`` on each access, so only one is in memory at a time."""

    def __init__(self, load: Callable[[int], Weights], n: int) -> None:
        if n < 0:
            raise ValueError(f"the number of snapshots must be >= 0, got {n}")
        self._load, self._n = load, int(n)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Weights: ...

    @overload
    def __getitem__(self, index: slice) -> LazySnapshots: ...

    def __getitem__(self, index: int | slice) -> Weights | LazySnapshots:
        if isinstance(index, slice):
            chosen = range(self._n)[index]
            return LazySnapshots(lambda j: self._load(chosen[j]), len(chosen))
        i = int(index)
        if not -self._n <= i < self._n:
            raise IndexError(f"snapshot index {index} out of range for {self._n} snapshots")
        return self._load(i % self._n)


@dataclass(frozen=True)
class TrajectoryPCA:
    """The first k principal directions of a path, how much of its variation each explains, and how they were found."""

    directions: tuple[dict[str, Tensor], ...]  # k dicts name -> tensor, every parameter; unit norm, mutually orthogonal
    explained_variance_ratio: np.ndarray  # (k,) lambda_j / sum of all lambda (sklearn's explained_variance_ratio_)
    explained_variance: np.ndarray  # (k,) lambda_j / (N - 1) centred, / N uncentred (sklearn's explained_variance_)
    singular_values: np.ndarray  # (k,) sqrt(lambda_j) (sklearn's singular_values_)
    coordinates: np.ndarray  # (N, k) each snapshot's w - w_ref projected on the (float64) directions
    centered: bool
    method: str  # "svd" or "gram"
    passes: int  # how many times the snapshots were read


def covered_parameters(weights: nn.Module | Weights, bias: str = "ignore") -> list[str]:
    """Names of the parameters a trajectory's PCA and projection cover: tensors of >= 2 dims, or all with ``include``."""
    check_bias_mode(bias)
    items = weights.named_parameters() if isinstance(weights, nn.Module) else weights.items()
    return [name for name, t in items if bias == "include" or t.dim() >= 2]


class _Reference:
    """The reference weights, the covered parameters' flat layout, and the checks every snapshot goes through."""

    def __init__(self, reference: nn.Module | Weights, bias: str) -> None:
        self.is_module = isinstance(reference, nn.Module)
        if isinstance(reference, nn.Module):
            self.weights: dict[str, Tensor] = {n: p.detach() for n, p in reference.named_parameters()}
            self.skip = frozenset(n for n, _ in reference.named_buffers())
        elif isinstance(reference, Mapping):
            self.weights, self.skip = dict(reference), frozenset()
        else:
            raise ValueError(f"the reference must be a model or a dict name -> tensor, got {type(reference).__name__}")
        self.names = covered_parameters(self.weights, bias)
        if not self.names:
            raise ValueError(f"no parameter is covered with bias={bias!r} (the model has no weight of 2+ dims?)")
        self.device = self.weights[self.names[0]].device
        self.offsets: list[int] = []
        total = 0
        for name in self.names:
            self.offsets.append(total)
            total += self.weights[name].numel()
        self.total = total
        self.flat = {n: self.weights[n].reshape(-1).to(self.device, torch.float64) for n in self.names}

    def parameters_of(self, tensors: object, what: str, *, drop_statistics: bool = False) -> Weights:
        """``tensors``' parameter entries, after checking they have exactly the reference's names and shapes."""
        if not isinstance(tensors, Mapping):
            raise ValueError(f"{what} is a {type(tensors).__name__}, not a dict name -> tensor (a state dict)")
        params: Weights = tensors
        if self.skip or drop_statistics:
            params = {k: v for k, v in tensors.items() if k not in self.skip and not (drop_statistics and is_running_stat(k))}
        try:
            check_compatible(self.weights, params, what=what)
        except ValueError as exc:
            hint = "" if self.is_module else "; to skip a state dict's buffers, give the model itself as the reference"
            raise ValueError(
                f"{exc} (another architecture? it must have the reference's parameter names and shapes{hint})"
            ) from None
        return params

    def _pieces(self, lo: int, hi: int) -> Iterator[tuple[str, int, int, int]]:
        """``(name, start, stop, position)``: the slices of covered tensors that fill flat positions ``[lo, hi)``."""
        for name, off in zip(self.names, self.offsets):
            n = self.weights[name].numel()
            a, b = max(lo, off), min(hi, off + n)
            if a < b:
                yield name, a - off, b - off, a - lo

    def flatten(self, params: Weights, lo: int = 0, hi: int | None = None, *, out: Tensor | None = None,
                relative: bool = True) -> Tensor:
        """Positions ``[lo, hi)`` of the covered parameters of ``params`` (minus the reference's) in float64."""
        hi = self.total if hi is None else hi
        if out is None:
            out = torch.empty(hi - lo, dtype=torch.float64, device=self.device)
        for name, a, b, at in self._pieces(lo, hi):
            piece = out[at : at + b - a]
            piece.copy_(params[name].detach().reshape(-1)[a:b])
            if relative:
                piece.sub_(self.flat[name][a:b])
        return out

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """A direction over every parameter: ``vector`` on the covered ones, zeros elsewhere; at least float32."""
        out: dict[str, Tensor] = {}
        covered = dict(zip(self.names, self.offsets))
        for name, w in self.weights.items():
            dtype = torch.promote_types(w.dtype, torch.float32) if w.is_floating_point() else torch.float32
            if name in covered:
                off = covered[name]
                out[name] = vector[off : off + w.numel()].reshape(w.shape).to(w.device, dtype)
            else:
                out[name] = torch.zeros(w.shape, dtype=dtype, device=w.device)
        return out


def _read(snapshots: Sequence[Weights], ref: _Reference) -> Iterator[tuple[int, Weights]]:
    for i in range(len(snapshots)):
        yield i, ref.parameters_of(snapshots[i], f"snapshot {i}")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of directions) must be an integer >= 1, got {k!r}")
    return int(k)


def _orient(vectors: Tensor, coords: Tensor) -> None:
    """Flip each direction (row of ``vectors``, column of ``coords``) so the first snapshot off its axis is positive."""
    for j in range(vectors.shape[0]):
        c = coords[:, j]
        off_axis = (c.abs() > 1e-6 * c.abs().max()).nonzero()
        if len(off_axis) and c[off_axis[0, 0]] < 0:
            vectors[j].neg_()
            coords[:, j].neg_()


def pca_directions(
    snapshots: Sequence[Weights],
    reference: nn.Module | Weights,
    k: int = 2,
    *,
    bias: str = "ignore",
    center: bool = True,
    method: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> TrajectoryPCA:
    """The first k principal directions of the snapshots' differences from ``reference`` (see the module docstring).

    ``snapshots`` is a sequence of dicts name -> tensor (a list, or ``LazySnapshots`` to read them one at a
    time; state dicts are fine when the reference is the model, whose buffers are then skipped).
    ``method``: ``svd`` (holds the N x P matrix; refused when it exceeds ``max_bytes``), ``gram`` (N x N
    Gram matrix over parameter blocks of at most ``max_bytes``), or ``auto`` (svd when the matrix takes at
    most a quarter of ``max_bytes``, which leaves room for the SVD's work space).
    """
    k = _check_k(k)
    if method not in METHODS:
        raise ValueError(unknown_name_message("PCA method", str(method), list(METHODS)))
    if isinstance(snapshots, Mapping) or not isinstance(snapshots, Sequence):
        raise ValueError(
            f"snapshots must be a sequence of state dicts (a list, or LazySnapshots(load, n) to read them one "
            f"at a time), got {type(snapshots).__name__}"
        )
    n = len(snapshots)
    if n < k + 1:
        raise ValueError(
            f"{k} direction(s) need at least {k + 1} snapshots, got {n}: keep more epochs or ask for fewer directions"
        )
    ref = _Reference(reference, bias)
    p, f64, dev = ref.total, torch.float64, ref.device
    block = max(1, int(max_bytes) // (8 * n))
    whole = block >= p
    if method == "auto":
        method = "svd" if 4 * 8 * n * p <= max_bytes else "gram"
    if method == "svd" and not whole:
        raise ValueError(
            f"method='svd' holds the {n} x {p} difference matrix ({8 * n * p / 2**20:.0f} MiB in float64), more "
            f"than max_bytes={max_bytes}: use method='gram' or raise max_bytes"
        )

    x: Tensor | None = None
    if whole:
        x = torch.empty((n, p), dtype=f64, device=dev)
        for i, params in _read(snapshots, ref):
            ref.flatten(params, out=x[i])
        passes = 1
    if method == "svd":
        assert x is not None  # whole, checked above
        mean = x.mean(dim=0) if center else torch.zeros(p, dtype=f64, device=dev)
        x.sub_(mean)  # in place: the centred copy would double the memory
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        lam, total = s**2, float((s**2).sum())
        vectors = vh[:k].clone()
        coords = u[:, :k] * s[:k] + mean @ vectors.T  # the uncentred rows' coordinates, as project_path sees them
    else:
        if x is not None:
            g = x @ x.T
        else:
            g = torch.zeros((n, n), dtype=f64, device=dev)
            storage = torch.empty(n * block, dtype=f64, device=dev)
            passes = 0
            for lo in range(0, p, block):
                hi = min(p, lo + block)
                xb = storage[: n * (hi - lo)].view(n, hi - lo)
                for i, params in _read(snapshots, ref):
                    ref.flatten(params, lo, hi, out=xb[i])
                g.addmm_(xb, xb.T)
                passes += 1
            del storage
        gc = g
        if center:
            # H G H with H = I - 11^T/n: the Gram matrix of the centred rows, without forming them.
            row = g.mean(dim=1, keepdim=True)
            gc = g - row - row.T + g.mean()
        lam, u = torch.linalg.eigh((gc + gc.T) / 2)
        lam, u = lam.flip(0), u.flip(1)
        total = float(torch.trace(gc))
        s = lam[:k].clamp(min=0).sqrt()
    top = float(lam[0]) if len(lam) else 0.0
    rank = int((lam > _RANK_TOL * top).sum()) if top > 0 else 0
    if rank < k:
        what = "about their mean" if center else "from the reference"
        raise ValueError(
            f"the snapshots' differences span {rank} dimension(s) {what}, fewer than the {k} direction(s) asked "
            f"for: ask for fewer directions, or check that the snapshots differ"
        )
    if method == "gram":
        # v_j = X_c^T u_j / s_j = X^T (H u_j) / s_j: centring u is centring the rows.
        w = u[:, :k] - u[:, :k].mean(dim=0) if center else u[:, :k]
        w = w / s
        if x is not None:
            vectors = w.T @ x
        else:
            vectors = torch.zeros((k, p), dtype=f64, device=dev)
            for i, params in _read(snapshots, ref):
                vectors.addr_(w[i], ref.flatten(params))
            passes += 1
        coords = g @ w  # X v_j = X X^T w_j
        norms = vectors.norm(dim=1)
        vectors /= norms[:, None]
        coords /= norms
    _orient(vectors, coords)
    lam_k = lam[:k].clamp(min=0).double().cpu().numpy()
    return TrajectoryPCA(
        directions=tuple(ref.unflatten(v) for v in vectors),
        explained_variance_ratio=lam_k / total,
        explained_variance=lam_k / (n - 1 if center else n),
        singular_values=np.sqrt(lam_k),
        coordinates=coords.cpu().numpy(),
        centered=center,
        method=method,
        passes=passes,
    )


def project_path(
    snapshots: Iterable[Weights],
    reference: nn.Module | Weights,
    directions: Sequence[Weights],
    *,
    bias: str = "ignore",
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coordinates ``(N, k)`` of each ``w - w_ref`` on the directions and the residual norms ``(N,)``.

    Over the covered parameters (see ``covered_parameters``), in float64, one snapshot at a time; the
    directions may carry BN running statistics (a direction between models), which are not covered.
    """
    ref = _Reference(reference, bias)
    if len(directions) < 1:
        raise ValueError("project_path needs at least one direction")
    d = torch.stack([
        ref.flatten(ref.parameters_of(di, f"direction {j}", drop_statistics=True), relative=False)
        for j, di in enumerate(directions)
    ])
    a = (d @ d.T).cpu().numpy()
    diag = np.diag(a)
    if np.any(diag <= 0):
        raise ValueError(f"direction {int(np.argmin(diag))} is zero on the covered parameters (bias={bias!r})")
    corr = a / np.sqrt(np.outer(diag, diag))
    if np.linalg.eigvalsh(corr)[0] < 1e-10:
        raise ValueError("the directions are (nearly) linearly dependent on the covered parameters: no unique projection")
    coords: list[np.ndarray] = []
    residuals: list[float] = []
    for i, snapshot in enumerate(snapshots):
        r = ref.flatten(ref.parameters_of(snapshot, f"snapshot {i}"))
        c = np.linalg.solve(a, (d @ r).cpu().numpy()) + 0.0  # + 0.0: no -0.0 at the reference
        coords.append(c)
        residuals.append(float((r - torch.from_numpy(c).to(r.device) @ d).norm()))
    return np.array(coords, dtype=np.float64).reshape(-1, len(directions)), np.array(residuals, dtype=np.float64)


def project_weights(
    weights: Weights, reference: nn.Module | Weights, directions: Sequence[Weights], *, bias: str = "ignore"
) -> tuple[np.ndarray, float]:
    """Least-squares coordinates ``(k,)`` of one ``w - w_ref`` on the directions, and the residual norm."""
    coords, residuals = project_path([weights], reference, directions, bias=bias)
    return coords[0], float(residuals[0])


def scan_range(coords: np.ndarray, margin: float = 0.2) -> tuple[tuple[float, float], ...]:
    """Per axis, ``(lo, hi)`` covering the path's coordinates and the origin, widened by ``margin`` of the extent per side."""
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim != 2 or len(c) == 0 or not np.all(np.isfinite(c)):
        raise ValueError(f"coords must be a finite (N, k) array with N >= 1, got shape {c.shape}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    out = []
    for lo, hi in zip(np.minimum(c.min(axis=0), 0.0), np.maximum(c.max(axis=0), 0.0)):
        extent = hi - lo if hi > lo else 1.0  # a path that never leaves the origin: a unit range around it
        out.append((float(lo - margin * extent), float(hi + margin * extent)))
    return tuple(out)
