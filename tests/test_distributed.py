"""Process groups and samplers of training and evaluation (feedbackseg/devices/distributed.py):
the training sampler resumes mid-epoch and shards without padding."""

from __future__ import annotations

import pytest

from feedbackseg.devices.distributed import ResumableDistributedSampler, ShardedEvalSampler

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_samplers_resume_and_shard_without_padding() -> None:
    data = list(range(10))
    full = ResumableDistributedSampler(data, 1, 0, shuffle=True, seed=4)
    full.set_epoch(2)
    order = list(full)
    assert sorted(i for _, i in order) == data and {e for e, _ in order} == {2}
    skipped = ResumableDistributedSampler(data, 1, 0, shuffle=True, seed=4)
    skipped.set_epoch(2)
    skipped.set_start(6)
    assert list(skipped) == order[6:] and len(skipped) == 4
    seen = [i for rank in range(3) for i in ShardedEvalSampler(10, 3, rank)]
    assert sorted(seen) == data  # every index exactly once: 10 on 3 ranks stays 10
