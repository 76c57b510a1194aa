"""`rlhf-ray generate` and `rlhf-ray chat`: a policy answers through the rollout engine, with the chat template."""

import io
import json

import pytest
import torch

from launch.cli import main
from rlhf_ray.models import load_policy, load_tokenizer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And now?"}]


def hf_greedy_text(model, tok, messages: list[dict], max_new_tokens: int) -> tuple[str, int]:
    """The reference: transformers' greedy generate on the chat-templated conversation."""
    ids = torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=False)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens)
    response = out[0, ids.shape[1]:].tolist()
    return tok.decode(response, skip_special_tokens=True), len(response)


def test_generate_greedy_through_vllm_equals_hf_greedy(tiny_model_dir, ray_local, tmp_path, capsys):
    pytest.importorskip("vllm")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is the capital of France?"}) + "\n"
                       + json.dumps({"prompt": MESSAGES}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    out = tmp_path / "answers.jsonl"
    assert main(["generate", str(tiny_model_dir), "--prompts", str(prompts), "--prompt", "Tell me a story.",
                 "--greedy", "--out", str(out), "--no-progress", "rollout.engine=vllm", "rollout.max_new_tokens=12",
                 "rollout.repetition_penalty=1.0", "rollout.max_model_len=256", "rollout.resources.num_cpus=1"]) == 0
    assert "3 responses to 3 prompts" in capsys.readouterr().out  # the empty prompt is a counted bad row
    rows = [json.loads(line) for line in out.open()]
    model, tok = load_policy(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)
    conversations = [[{"role": "user", "content": "Tell me a story."}],
                     [{"role": "user", "content": "What is the capital of France?"}], MESSAGES]
    assert [r["format"] for r in rows] == ["plain", "plain", "messages"]
    for row, messages in zip(rows, conversations):
        text, n = hf_greedy_text(model, tok, messages, 12)
        assert (row["response"], row["tokens"]) == (text, n)


def test_chat_keeps_the_conversation_and_answers_as_hf_greedy(tiny_model_dir, ray_local, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\nAnd now?\n/reset\nHi\n"))
    assert main(["chat", str(tiny_model_dir), "--greedy", "--system", "Be brief.", "rollout.engine=hf",
                 "rollout.max_new_tokens=6", "rollout.repetition_penalty=1.0", "rollout.resources.num_cpus=1"]) == 0
    said = capsys.readouterr().out
    model, tok = load_policy(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)
    first, _ = hf_greedy_text(model, tok, MESSAGES[:2], 6)
    second, _ = hf_greedy_text(model, tok, MESSAGES[:2] + [{"role": "assistant", "content": first},
                                                           {"role": "user", "content": "And now?"}], 6)
    assert said == "\n".join([first, second, "(conversation reset)", first]) + "\n"  # answers may hold newlines
