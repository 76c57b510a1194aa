"""The metrics logger: JSONL, TensorBoard, and Weights & Biases (offline here: no network) with the run's config."""

import json
import struct
import sys
from pathlib import Path

import pytest

from rlhf_ray.config import ConfigError, load_config
from rlhf_ray.metrics import MetricsLogger, read_metrics


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log of 32 KiB blocks after a 7-byte
    header; records may span blocks), read independently of wandb's own (Go) reader."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, parts, records = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:
            break
        parts += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def test_wandb_offline_gets_every_metric_and_the_config_and_a_resume_logs_on(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(None, ["run.wandb=offline", "run.name=tiny", "ppo.kl_coef=0.07"])
    logger = MetricsLogger(tmp_path, cfg=cfg)
    for step in (1, 2, 3):
        logger.log(step, {"reward/mean": 0.1 * step, "kl/mean": float("nan") if step == 2 else 0.01})
    logger.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = wandb_records(next(runs[0].glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["ppo"]["kl_coef"] == 0.07 and config["run"]["name"] == "tiny" and run.run_id == (
        tmp_path / "wandb_id").read_text()
    history = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item} for r in records if r.WhichOneof("record_type") == "history"]
    assert [(h["_step"], float(h["reward/mean"])) for h in history] == [("1", 0.1), ("2", 0.2), ("3", pytest.approx(0.3))]
    assert [r["reward/mean"] for r in read_metrics(tmp_path / "metrics.jsonl")] == pytest.approx([0.1, 0.2, 0.3])

    run_id = (tmp_path / "wandb_id").read_text()
    resumed = MetricsLogger(tmp_path, cfg=cfg)  # the same folder: the same wandb run
    resumed.log(4, {"reward/mean": 0.4})
    resumed.close()
    assert (tmp_path / "wandb_id").read_text() == run_id
    assert all(run_id in p.name for p in (tmp_path / "wandb").glob("offline-run-*"))


def test_wandb_without_the_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"run.wandb=online needs the wandb package"):
        MetricsLogger(tmp_path, cfg=load_config(None, ["run.wandb=online"]))
