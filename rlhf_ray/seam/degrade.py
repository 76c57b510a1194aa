"""SEAM-GPT worse answers without GPT-4 (ALGORITHMS.md §3.1, §6.3): a *degrader* LLM is asked for lower-quality
answers, with the paper's system and user prompts, through the project's rollout engine (vLLM, or HF generate) on
any local HF model, or through an OpenAI-compatible endpoint for users who have one.

Answers that come back empty, equal to the gold answer or repeated are dropped and counted, so a prompt may get
fewer than k.
"""

from dataclasses import dataclass

SYSTEM = "You generate responses to questions with lower quality. Your generated responses are long."
USER = (
    "Using the question and its correct answer provided below, generate an answer that is of lower quality. "
    "The response should include one or more of: factual inaccuracies, misunderstandings of the core question, "
    "irrelevant information, or grammatical errors. Reply with the lower-quality answer only.\n\n"
    "Question: {question}\n\nCorrect answer: {gold}"
)


def degrader_messages(question: str, gold: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(question=question, gold=gold)}]


@dataclass
class Degraded:
    answers: list[list[str]]  # per prompt, in input order
    dropped_empty: int = 0
    dropped_gold: int = 0
    dropped_repeats: int = 0


def keep_worse(samples: list[list[str]], golds: list[str]) -> Degraded:
    """Strip every sample; drop empty ones, copies of the gold answer and repeats (a repeat would count twice in
    SEAM's mass), counting each."""
    out = Degraded([])
    for texts, gold in zip(samples, golds, strict=True):
        kept: list[str] = []
        for text in (t.strip() for t in texts):
            if not text:
                out.dropped_empty += 1
            elif text == gold.strip():
                out.dropped_gold += 1
            elif text in kept:
                out.dropped_repeats += 1
            else:
                kept.append(text)
        out.answers.append(kept)
    return out


def fit_degrader_prompt(tokenizer, question: str, gold: str, max_prompt_tokens: int) -> list[int]:
    """The rendered degrader prompt in at most max_prompt_tokens: question and gold answer are cut (the question
    keeps its end, where the last turn is; the answer its start), never the instructions around them."""
    def render(q: str, g: str) -> list[int]:
        text = tokenizer.apply_chat_template(degrader_messages(q, g), add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = render(question, gold)
    if len(ids) <= max_prompt_tokens:
        return ids
    room = max_prompt_tokens - len(render("", ""))
    if room < 2:
        raise ValueError(f"the degrader prompt's instructions alone take {max_prompt_tokens - room} tokens, more than "
                         f"the {max_prompt_tokens} a prompt may have: raise rollout.max_model_len")
    q_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    g_ids = tokenizer(gold, add_special_tokens=False)["input_ids"]
    g_keep = min(len(g_ids), room // 2)  # the answer gets up to half the room, the question the rest
    q_keep = room - g_keep
    # Decoding and re-encoding may move a token boundary: trim the question, then the answer, until it fits.
    while True:
        ids = render(tokenizer.decode(q_ids[len(q_ids) - q_keep:]), tokenizer.decode(g_ids[:g_keep]))
        if len(ids) <= max_prompt_tokens or q_keep + g_keep == 0:
            return ids
        if q_keep:
            q_keep = max(0, q_keep - 4)
        else:
            g_keep = max(0, g_keep - 4)


def sample_degraded(engine, tokenizer, questions: list[str], golds: list[str], k: int, seeds: list[int],
                    max_tokens: int = 128, temperature: float = 1.0, max_prompt_tokens: int = 768) -> list[list[str]]:
    """k raw samples per question from a rollout engine (VLLMEngine or HFEngine), the degrader prompt rendered with
    the model's chat template; seeds[i] seeds question i's samples, so its answers do not depend on the batch."""
    from ..rollout.types import SamplingParams

    prompt_ids = [fit_degrader_prompt(tokenizer, q, g, max_prompt_tokens) for q, g in zip(questions, golds)]
    sampling = SamplingParams(n=k, max_tokens=max_tokens, temperature=temperature, top_p=1.0, seed=None)
    rollouts = engine.generate(prompt_ids, sampling, prompt_seeds=seeds)
    samples: list[list[str]] = [[] for _ in questions]
    for index, text in zip(rollouts.prompt_index, rollouts.texts):
        samples[index].append(text)
    return samples


def degrade_with_engine(engine, tokenizer, questions: list[str], golds: list[str], k: int, seeds: list[int],
                        **sampling) -> Degraded:
    """sample_degraded, then keep_worse."""
    return keep_worse(sample_degraded(engine, tokenizer, questions, golds, k, seeds, **sampling), golds)


def degrade_with_endpoint(base_url: str, model: str, questions: list[str], golds: list[str], k: int,
                          seeds: list[int], max_tokens: int = 128, temperature: float = 1.0,
                          api_key: str = "EMPTY") -> Degraded:
    """k samples per question from an OpenAI-compatible chat endpoint (n=k in one request per question, seeded
    with the question's own seed where the server honours seeds)."""
    try:
        from openai import OpenAI
    except ImportError as err:
        raise ImportError("seam.degrader_endpoint needs the openai package (pip install openai)") from err
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=3)
    samples = []
    for q, g, seed in zip(questions, golds, seeds, strict=True):
        reply = client.chat.completions.create(model=model, messages=degrader_messages(q, g), n=k,
                                               max_tokens=max_tokens, temperature=temperature, seed=seed % 2**31)
        samples.append([choice.message.content or "" for choice in reply.choices])
    return keep_worse(samples, golds)
