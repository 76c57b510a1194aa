import subprocess
import sys

import pytest

from launch.cli import build_parser, main


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "launch.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("rm", "data", "assets", "config"):
        assert command in out
    sub = build_parser()._subparsers._group_actions[0].choices
    assert set(sub) >= {"rm", "data", "assets", "config"}


def test_unknown_key_fails_with_its_name(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("rm:\n  learning_rate: 1.0e-5\n")
    assert main(["config", "show", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "rm.learning_rate" in err and str(cfg) in err


def test_config_show_applies_overrides(capsys):
    assert main(["config", "show", "configs/quickstart.yaml", "ppo.kl_coef=0.05"]) == 0
    assert "kl_coef: 0.05" in capsys.readouterr().out


def test_overrides_may_follow_a_flag(capsys):
    assert main(["data", "inspect", "configs/quickstart.yaml", "--show", "0", "data.max_pairs=10"]) == 0
    assert "split: 10 train pairs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "inspect", "configs/quickstart.yaml", "--show", "0", "--bogus"])


def test_data_inspect_reports_counts(capsys):
    assert main(["data", "inspect", "configs/quickstart.yaml", "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert "2312 rows, 2312 kept, 0 skipped" in out and "further turns: 5" in out


def test_rm_commands_are_registered_and_check_the_batch_split(tmp_path, capsys):
    rm = build_parser()._subparsers._group_actions[0].choices["rm"]
    assert set(rm._subparsers._group_actions[0].choices) == {"train", "eval", "strength"}
    # Every rank must run the same micro-batches: 8 pairs cannot split into 3 ranks x 2.
    assert main(["rm", "train", "configs/quickstart.yaml", f"run.output_dir={tmp_path}", "rm.batch_size=8",
                 "rm.micro_batch_size=2", "learner.world_size=3"]) == 2
    assert "rm.batch_size (8) must be a multiple of rm.micro_batch_size x learner.world_size" in capsys.readouterr().err
    assert main(["config", "show", "configs/quickstart.yaml", "rm.flip=true"]) == 2
    assert "need rm.strength_file" in capsys.readouterr().err
