"""The same training code on two processes (torch.distributed, gloo on CPU) via accelerate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_the_same_model_shape(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    import yaml
    from safetensors.torch import load_file

    from vila2.training.trainer import train

    settings = {
        "model": str(tiny_model),
        "mixture": [{"dataset": str(tiny_world / "pretrain"), "layers": ["alt"], "template": "concat"}],
        "max_steps": 3, "batch_size": 4, "max_length": 64, "log_every": 1,
    }
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**settings, "out": str(tmp_path / "two")}))
    # accelerate's --cpu launcher needs MPI for several processes; its torchrun launcher
    # (--multi_gpu) works anywhere, and vila2 picks the gloo backend when there is no GPU
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "vila2", "train", str(config)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "two"
    assert json.loads((two / "training" / "done.json").read_text())["processes"] == 2
    losses = [json.loads(line)["loss"] for line in (two / "training" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0]  # one log line per step: only rank 0 writes

    one = train({**settings, "out": str(tmp_path / "one")})
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert (two / "config.json").read_text() == (one / "config.json").read_text()
