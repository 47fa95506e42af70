"""A user's task network plugs in without editing the package: ``--task module.path:factory``, an
``icmbridge.tasks`` entry point, and ``--task-option KEY=VALUE`` for the factory's options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quick import FINETUNE

from icmbridge.commands import main
from icmbridge.errors import InputError
from icmbridge.tasks import available_tasks, build_task, parse_task_options

PLUGIN = '''
"""A toy task outside the icmbridge package: one "object" box per image, the whole frame,
scored by mean brightness; distillation on a small frozen conv net's features."""
import torch
from torch import nn

from icmbridge.tasks.base import MachineTask, freeze

BUILT = []  # the options each build received, for the test to read


class Brightness(MachineTask):
    class_agnostic = True

    def __init__(self, threshold=0.0, width=4, weights_path=None):
        super().__init__()
        torch.manual_seed(0)
        self.name = f"brightness(width={width})"
        self.threshold = threshold
        self.net = freeze(nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU()))
        BUILT.append({"threshold": threshold, "width": width, "weights_path": weights_path})

    def modules(self):
        return [self.net]

    def loss(self, x_hat, x, targets=None):
        with torch.no_grad():
            ref = self.net(x)
        return (self.net(x_hat) - ref).pow(2).mean()

    @torch.no_grad()
    def predict(self, images):
        out = []
        for im in images:
            h, w = im.shape[-2:]
            score = im.mean()
            keep = bool(score >= self.threshold)
            boxes = torch.tensor([[0.0, 0.0, w, h]])[:int(keep)]
            out.append({"boxes": boxes, "scores": score.reshape(1)[:int(keep)],
                        "labels": torch.ones(int(keep), dtype=torch.int64)})
        return out

    def features(self, images):
        return [self.net(images)]


def build(**kwargs):
    return Brightness(**kwargs)


def not_a_task(**kwargs):
    return object()
'''


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module ``user_tasks`` on sys.path, and a distribution declaring it as entry point."""
    import importlib
    import sys

    (tmp_path / "user_tasks.py").write_text(PLUGIN)
    dist = tmp_path / "user_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[icmbridge.tasks]\nbrightness = user_tasks:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("user_tasks", None)
    module = importlib.import_module("user_tasks")
    yield module
    sys.modules.pop("user_tasks", None)


def test_task_options_are_typed() -> None:
    opts = parse_task_options(["num_classes=3", "box-score-thresh=0.3", "flag=true", "x=a:b"])
    assert opts == {"num_classes": 3, "box_score_thresh": 0.3, "flag": True, "x": "a:b"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_task_options(["no-value"])


def test_task_from_module_path_and_entry_point(plugin) -> None:
    task = build_task("user_tasks:build", width=2)
    assert task.name == "brightness(width=2)"
    assert "brightness" in available_tasks()
    assert build_task("brightness").name == "brightness(width=4)"
    with pytest.raises(InputError, match="not an icmbridge MachineTask"):
        build_task("user_tasks:not_a_task")
    with pytest.raises(InputError, match="has no nothing"):
        build_task("user_tasks:nothing")
    with pytest.raises(InputError, match="does not take"):
        build_task("brightness", colour=1)


def test_plugin_task_evaluates_and_finetunes(plugin, tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", "--model", str(tiny_model_dir), "--set", "faces:test", "--limit", "2"]
    args += ["--task", "user_tasks:build", "--task-option", "width=3"]
    args += ["--task-option", "threshold=-0.5", "--json", str(out), "--threads", "1"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    (entry,) = result["codecs"].values()  # one codec: the evaluated model
    assert result["task"] == "brightness(width=3)"
    assert plugin.BUILT[-1] == {"threshold": -0.5, "width": 3, "weights_path": None}
    assert entry["mean"]["n_pred"] == 2 and entry["mean"]["feature_distance"] > 0

    # a few finetuning steps with the plug-in's loss in the generator's objective
    run = tmp_path / "ft"
    args = ["finetune", "--base", str(tiny_model_dir), "--out", str(run), "--steps", "2"]
    args += [*FINETUNE, "--task", "brightness", "--task-option", "width=5", "--lambda-task", "1"]
    before = len(plugin.BUILT)
    assert main(args) == 0
    assert plugin.BUILT[before:] == [{"threshold": 0.0, "width": 5, "weights_path": None}]
    saved = json.loads((run / "run.json").read_text())
    assert saved["task"] == "brightness" and saved["task_options"] == ["width=5"]
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_plugin_errors_are_one_line(tmp_path, tiny_model_dir, capsys) -> None:
    args = ["evaluate", "--model", str(tiny_model_dir), "--set", "faces:test", "--limit", "1"]
    assert main([*args, "--task", "no_such_module_xyz:build"]) == 2
    assert "cannot import no_such_module_xyz" in capsys.readouterr().err
    assert main([*args, "--task", "face", "--task-option", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task 'face' does not take bogus")


@pytest.mark.parametrize("command", ["ablate", "demo", "finetune"])
def test_commands_that_need_a_task_refuse_none(command, tmp_path, capsys) -> None:
    # 'none' skips task metrics in evaluate/compare/curves; here it would silently mean a default
    # (train takes it for rate + MSE with --lambda-task 0: tests/test_train.py)
    out = "--out" if command == "finetune" else "-o"
    with pytest.raises(SystemExit) as exc:
        main([command, "--task", "none", out, str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "needs a task network; 'none' is refused" in err and "Traceback" not in err
