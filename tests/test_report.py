"""`rlhf-ray report`: the run folder as one HTML page; written by `train` itself at the end of a run."""

import html
import json

from launch.cli import main
from launch.trainer import rl_prompt_rows
from rlhf_ray.config import load_config

PPO_PLOTS = ["reward", "KL to the reference", "policy entropy", "response length", "time per phase", "throughput",
             "online rounds", "reward_kl.png"]


def test_the_report_of_an_online_run_holds_every_plot_the_rounds_and_the_samples(online_run, capsys):
    run_dir = online_run[1] / "straight"
    page = (run_dir / "report.html").read_text()  # written by the run itself
    for title in PPO_PLOTS:
        assert f"<figcaption>{title}</figcaption>" in page, title
    assert page.count("src='data:image/png;base64,") == len(PPO_PLOTS)  # self-contained: every plot inside
    assert {p.name for p in (run_dir / "report").glob("*.png")} == {
        "reward.png", "kl.png", "entropy.png", "length.png", "phases.png", "throughput.png", "rounds.png"}
    rounds = page.split("<h2>Online rounds</h2>")[1].split("</table>")[0]
    assert rounds.count("<tr>") == 1 + 2 and "proxy_gold_agreement" in rounds  # a header and 2 rounds
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").open()]
    assert "<h2>Samples: iteration 1 and iteration 4</h2>" in page
    texts = list(rl_prompt_rows(load_config(str(run_dir / "config.yaml"), []))["prompt"])
    section = page.split("<h2>Samples")[1]
    shown = lambda text: html.escape(text[:60]).replace("\n", "<br>") in section  # noqa: E731
    for step in (1, 4):  # responses of both iterations, under their prompts' texts (samples.jsonl has indices)
        assert sum(shown(s["response"]) for s in samples if s["step"] == step) >= 2
    assert sum(shown(texts[s["prompt_index"]]) for s in samples if s["step"] == 1) >= 2

    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0 and "report:" in capsys.readouterr().out
    assert (run_dir / "report.html").read_text().count("<figcaption>") == len(PPO_PLOTS)


def test_report_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder (no config.yaml)" in capsys.readouterr().err
