"""``fbseg train --turbulence online`` (feedbackseg.data.turbulence): fresh, deterministic draws,
resume to identical weights, DDP ranks with different draws, the stored path unchanged, and
one-line errors for bad values. Tiny shards, --small, CPU, workers 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import feedbackseg.training.train as train_module
from feedbackseg.config import ConfigError, resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.data.turbulence import OnlineTurbulence, sample_seed
from feedbackseg.devices.distributed import ResumableDistributedSampler
from feedbackseg.runs.checkpoints import load_checkpoint
from turbsim.augment import warp
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = {"small": True, "height": 32, "batch_size": 2, "workers": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train and 2 val scenes of 64 x 128, stored at 32 x 64 with the BMVC air (tilt only)."""
    tmp = tmp_path_factory.mktemp("online-shards")
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0,
                      per_split={"train": 4, "val": 2})  # fmt: skip
    recipe = resolve_recipe(
        "bmvc2020",
        {"compression": "lzf", "shard_size": 4, "size": "32x64", "store_flow": "float16"},
    )
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


def _config(shards: Path, out: Path, **overrides):
    return resolve_config(shards, out, overrides={**FAST, **overrides})


def _quiet(_: str) -> None:
    pass


def _losses(run: Path) -> list[float]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss_seg"] for r in records if r["kind"] == "train"]


def test_sample_seed_depends_on_seed_epoch_and_index_only() -> None:
    seeds = {sample_seed(s, e, i) for s in (0, 1) for e in (0, 1) for i in (0, 1, 2)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(3, 1, 7) == sample_seed(3, 1, 7)


def test_online_draws_are_fresh_per_epoch_and_reproducible(shards: Path, tmp_path: Path) -> None:
    config = _config(shards, tmp_path / "run", turbulence="online")
    data = ShardDataset(shards, "train", height=32, input="clean")
    online = OnlineTurbulence(config, data.stored_size, data.image_size, torch.device("cpu"))
    assert online.native_size == (64, 128)  # the frames' scale, not the training size
    clean = torch.stack([data[i]["clean"] for i in range(3)])
    first, flow = online(clean, 0, [0, 1, 2])
    again, flow_again = online(clean, 0, torch.tensor([0, 1, 2]))
    later, flow_later = online(clean, 1, [0, 1, 2])
    assert torch.equal(first, again) and torch.equal(flow, flow_again)
    assert not torch.equal(flow, flow_later)  # a new epoch draws anew
    assert not torch.equal(flow[0], flow[1])
    # one sample's draw does not depend on the batch it is in
    alone, flow_alone = online(clean[1:2], 0, [1])
    assert torch.equal(flow_alone[0], flow[1]) and torch.equal(alone[0], first[1])
    # the flow is the draw's displacement (bmvc2020: tilt only, clamped border)
    torch.testing.assert_close(first, warp(clean, flow), atol=0, rtol=0)
    assert tuple(flow.shape) == (3, 2, 32, 64) and flow.dtype == torch.float32


def test_ddp_ranks_draw_different_samples_and_turbulence(shards: Path, tmp_path: Path) -> None:
    config = _config(shards, tmp_path / "run", turbulence="online")
    data = ShardDataset(shards, "train", height=32, input="clean")
    online = OnlineTurbulence(config, data.stored_size, data.image_size, torch.device("cpu"))
    flows = {}
    for rank in (0, 1):
        sampler = ResumableDistributedSampler(data, num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(0)
        indices = [i for _, i in sampler][:2]
        clean = torch.stack([data[i]["clean"] for i in indices])
        flows[rank] = (indices, online(clean, 0, indices)[1])
    assert set(flows[0][0]).isdisjoint(flows[1][0])
    assert not torch.equal(flows[0][1], flows[1][1])


def test_online_training_is_deterministic_and_resumes_to_identical_weights(
    shards: Path, tmp_path: Path
) -> None:
    """5 steps in one go == 3 steps (mid-epoch) + --resume to 5; and == a second whole run."""
    common = {"mode": "restore-seg", "seed": 3, "log_every": 1, "val_every": 2,
              "turbulence": "online"}  # fmt: skip
    train_module.train(_config(shards, tmp_path / "a", max_steps=5, **common), _quiet)
    train_module.train(_config(shards, tmp_path / "b", max_steps=5, **common), _quiet)
    train_module.train(_config(shards, tmp_path / "c", max_steps=3, **common), _quiet)
    train_module.train(_config(shards, tmp_path / "c", max_steps=5, resume=True, **common), _quiet)
    weights = [load_checkpoint(tmp_path / run / "last.pt")["model"] for run in "abc"]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]) and torch.equal(value, weights[2][key]), key
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b") == _losses(tmp_path / "c")
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["turbulence"] == "online" and "turbulence_recipe" not in saved
    # online turbulence really changes what is trained on
    stored = {k: v for k, v in common.items() if k != "turbulence"}
    train_module.train(_config(shards, tmp_path / "s", max_steps=5, **stored), _quiet)
    assert _losses(tmp_path / "s") != _losses(tmp_path / "a")


@pytest.fixture
def erfnet_inputs(monkeypatch) -> list[torch.Tensor]:
    """The network inputs of every erfnet training step (a spy on the train step)."""
    seen: list[torch.Tensor] = []
    original = train_module.TRAIN_STEPS["erfnet"]

    def spy(model, x, *args, **kwargs):
        seen.append(x.clone())
        return original(model, x, *args, **kwargs)

    monkeypatch.setitem(train_module.TRAIN_STEPS, "erfnet", spy)
    return seen


def test_stored_turbulence_feeds_the_stored_images_and_saves_no_new_keys(
    shards: Path, tmp_path: Path, monkeypatch, erfnet_inputs: list[torch.Tensor]
) -> None:
    """The default path: the model gets the shards' distorted images, never builds the online
    distortion, and config.json holds no turbulence key (byte-identical to older runs)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the stored path must not build online turbulence")

    monkeypatch.setattr(train_module, "OnlineTurbulence", refuse)
    run = tmp_path / "run"
    config = _config(shards, run, mode="erfnet", max_steps=1, turbulence="stored", seed=0)
    assert config.to_dict() == _config(shards, run, mode="erfnet", max_steps=1).to_dict()
    train_module.train(config, _quiet)
    assert "turbulence" not in json.loads((run / "config.json").read_text())
    data = ShardDataset(shards, "train", height=32)
    (x,) = erfnet_inputs
    stored = torch.stack([data[i]["distorted"] for i in range(len(data))])
    assert all(any(torch.equal(row, s) for s in stored) for row in x)


def test_online_training_uses_clean_inputs_and_validates_on_stored(
    shards: Path, tmp_path: Path, erfnet_inputs: list[torch.Tensor]
) -> None:
    config = _config(shards, tmp_path / "run", mode="erfnet", max_steps=1, turbulence="online")
    train_set, val_set = train_module._datasets(config, _quiet)
    assert train_set.input == "clean" and val_set is not None and val_set.input == "distorted"
    train_module.train(config, _quiet)
    (x,) = erfnet_inputs
    data = ShardDataset(shards, "train", height=32)
    for row in x:  # neither a stored distorted nor a clean image: a fresh distortion
        assert not any(torch.equal(row, data[i]["distorted"]) for i in range(len(data)))
        assert not any(torch.equal(row, data[i]["clean"]) for i in range(len(data)))


def test_online_with_crops_renders_the_crop_at_the_native_scale(
    shards: Path, tmp_path: Path
) -> None:
    config = _config(shards, tmp_path / "r", turbulence="online", augment=True, crop=(16, 32))
    online = OnlineTurbulence(config, (32, 64), (32, 64), torch.device("cpu"))
    assert online.native_size == (32, 64)  # a 16x32 crop of a 2x downsized frame
    result = train_module.train(_config(shards, tmp_path / "r2", mode="erfnet", max_steps=2,
                                        turbulence="online", augment=True, crop=(16, 32)),
                                _quiet)  # fmt: skip
    assert result.step == 2


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--turbulence-recipe", "strong"], "'--turbulence-recipe': needs turbulence = online"),
        (["--turbulence", "online", "--turbulence-recipe", "no-such"], "recipe file not found"),
        (
            ["--turbulence", "online", "--turbulence-recipe", "synthetic-benchmark"],
            "stores 128x256",
        ),
        (["--turbulence", "online", "--height", "128"], "larger than the native frames"),
        (["--turbulence", "sideways"], "'--turbulence'"),
    ],
)
def test_bad_values_are_one_line_errors(
    shards: Path, tmp_path: Path, flags: list[str], needle: str
) -> None:
    run = tmp_path / "run"
    args = ["train", str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1",
            "--small", "--batch-size", "2", "--workers", "0", "--device", "cpu"]  # fmt: skip
    if "--height" not in flags:
        args += ["--height", "32"]
    result = CliRunner().invoke(main, args + flags)
    assert result.exit_code in (1, 2), result.output
    assert needle in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not run.exists()  # refused before anything was written


def test_online_and_clean_input_exclude_each_other(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        _config(shards, tmp_path / "r", turbulence="online", input="clean")


def test_turbulence_render_reaches_the_module(shards: Path, tmp_path: Path) -> None:
    config = _config(shards, tmp_path / "r", turbulence="online", turbulence_render="stored")
    online = OnlineTurbulence(config, (32, 64), (32, 64), torch.device("cpu"))
    assert online.module.render == "stored" and "area-averaged law" in online.describe()
    default = OnlineTurbulence(_config(shards, tmp_path / "d", turbulence="online"), (32, 64),
                               (32, 64), torch.device("cpu"))  # fmt: skip
    assert default.module.render == "native"
