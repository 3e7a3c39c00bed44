"""feedbackseg: spatial-feedback restoration + semantic segmentation of turbulence-distorted images.

Models, losses, metrics and training loops (torch) that read the HDF5 shards written by turbsim,
through ``turbsim.shards`` only. The package imports nothing heavy, so importing it (and
``fbseg --help``) stays fast; torch is imported by the submodules that need it.

Rooms (each may import only the rooms above it; tests/test_import_rules.py holds the table)::

    models/      the networks R and S, the feedback loop, the warp, the model factory
    devices/     where the work runs: devices and process groups, precision, memory
    data/        shards as torch datasets, online turbulence, loader workers, class colours
    runs/        what a run leaves on disk: the run folder, its lock, checkpoints (ours, original)
    evaluation/  metrics, inference, ``fbseg eval``/``predict``/``compare``/``plot``, R's gains
    training/    ``fbseg train``: the trainer, its state, validation, losses, progress
    study/       ``fbseg study``: the study file, the runner, its records and report

Beside them, read by every room: ``config`` (the training configuration), ``modes`` (the table of
the training modes), ``label_layout`` (19 or 20 classes), ``errors``, ``paths`` and
``json_values``. ``feedbackseg.flow``, ``feedbackseg.losses``, ``feedbackseg.metrics`` and
``feedbackseg.checkpoints`` stay importable by those public paths (:data:`PUBLIC_MODULES`).
"""

from turbsim import _aliases

__version__ = "0.1.0"

#: Public module paths (the API code outside the repository imports) -> the module of its room.
PUBLIC_MODULES: dict[str, str] = {
    "feedbackseg.checkpoints": "feedbackseg.runs.checkpoints",
    "feedbackseg.flow": "feedbackseg.models.flow",
    "feedbackseg.losses": "feedbackseg.training.losses",
    "feedbackseg.metrics": "feedbackseg.evaluation.metrics",
}
_aliases.install(PUBLIC_MODULES)
