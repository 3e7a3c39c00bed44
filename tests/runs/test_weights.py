"""What both checkpoint readers share (feedbackseg/runs/weights.py): the exported state dict is
detached CPU copies."""

from __future__ import annotations

import torch

from feedbackseg.models import Restorer
from feedbackseg.runs.checkpoints import export_state_dict


def test_export_state_dict_is_detached_copies() -> None:
    net = Restorer(base_width=4, depth=2, num_classes=3)
    exported = export_state_dict(net)
    assert exported.keys() == net.state_dict().keys()
    with torch.no_grad():
        net.last.bias.add_(1.0)
    assert not torch.equal(exported["last.bias"], net.last.bias)
    assert all(not v.requires_grad and v.is_contiguous() for v in exported.values())
