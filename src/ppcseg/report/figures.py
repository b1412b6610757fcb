"""Figures as the report embeds them: PNG bytes of a matplotlib figure, and their data URI."""

from __future__ import annotations

import base64
import io
from typing import Any


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes (no software stamp, so the same figure gives the same bytes); closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
