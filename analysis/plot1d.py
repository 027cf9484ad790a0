"""Line scans: loss (left axis) and accuracy (right axis) against the step size, train and test."""

from __future__ import annotations

from matplotlib.figure import Figure

from analysis.common import new_figure, tidy_log_axis
from analysis.surface import Surface, SurfaceError

LOSS_STYLE = {"train_loss": ("tab:blue", "-"), "test_loss": ("tab:blue", "--")}
ACC_STYLE = {"train_acc": ("tab:red", "-"), "test_acc": ("tab:red", "--")}


def _drawable(surface: Surface, names: list[str], *, log: bool) -> list[str]:
    """The metrics among `names` that have at least one valid point."""
    return [m for m in names if m in surface.metrics and surface.valid(m, log=log).any()]


def plot1d_figure(surface: Surface, *, log: bool = False) -> Figure:
    """Loss and accuracy curves of a 1D surface on twin axes; masked points leave gaps."""
    if surface.y is not None:
        raise SurfaceError(
            f"{surface.describe()} is a 2D surface ({surface.y.size} x {surface.x.size}); plot1d needs a 1D "
            "surface: use `contour` for 2D files, or take a slice with --at-y VALUE / --at-x VALUE"
        )
    # Train before test, so the legend reads in the same order for every file.
    order = sorted(surface.metrics, key=lambda m: (not m.startswith("train"), m))
    losses = [m for m in order if m.endswith("loss")]
    accs = [m for m in order if m.endswith("acc")]
    loss_drawn = _drawable(surface, losses, log=log)
    acc_drawn = _drawable(surface, accs, log=False)
    if not loss_drawn and not acc_drawn:
        raise SurfaceError(
            f"{surface.describe()}: no loss or accuracy dataset with computed, finite points "
            f"(value datasets present: {', '.join(sorted(surface.metrics))})"
        )
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    handles = []
    for m in loss_drawn:
        color, style = LOSS_STYLE.get(m, ("tab:blue", ":"))
        handles += ax.plot(surface.x, surface.values(m, log=log), color=color, linestyle=style, label=m)
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel("loss", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    if log:
        ax.set_yscale("log")
        # Autoscaled limits; a line scan's loss often spans under a decade, where matplotlib's
        # default log ticks would be a single "2.3x10^0" label.
        tidy_log_axis(ax.yaxis, *ax.get_ylim())
    if acc_drawn:
        twin = ax.twinx()
        for m in acc_drawn:
            color, style = ACC_STYLE.get(m, ("tab:red", ":"))
            handles += twin.plot(surface.x, surface.values(m), color=color, linestyle=style, label=m)
        twin.set_ylabel("accuracy (%)", color="tab:red")
        twin.tick_params(axis="y", labelcolor="tab:red")
    ax.set_xlim(surface.x.min(), surface.x.max())
    # One legend for both axes, below the plot: inside, some curve of one of the axes would run over it.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8, frameon=False)
    title = surface.name
    if surface.attrs.get("slice"):
        title += f" ({surface.attrs['slice']})"
    ax.set_title(title, fontsize=10)
    return fig
