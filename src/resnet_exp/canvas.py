"""The one way this project makes a Matplotlib figure: on its own Agg canvas, never through pyplot, so that the
report and the analysis commands draw on headless training machines and leave the caller's backend and pyplot
state alone."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def panels(
    count: int = 1, width: float = 5.0, height: float = 3.6, rows: int = 1, share: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure of `count` panels of `width` x `height` inches each, in `rows` rows. `share` gives all panels one x
    and one y scale, so that curves side by side (plain vs residual nets) compare by eye."""
    fig = Figure(figsize=(width * count / rows, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(rows, count // rows, sharex=share, sharey=share, squeeze=False).flat)
