"""ppcseg: weakly supervised semantic segmentation with pixel-to-prototype contrast (PPC)."""

__version__ = "0.1.0"
