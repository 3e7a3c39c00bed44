"""feedbackseg: spatial-feedback restoration + semantic segmentation of turbulence-distorted images.

Models, losses, metrics and training loops (torch) that read the HDF5 shards written by turbsim,
through ``turbsim.shards`` only. Placeholder for now: the package imports nothing heavy, so
importing it (and ``fbseg --help``) stays fast; torch is imported by the submodules that need it.
"""

__version__ = "0.1.0"
