"""SEAM's core: the score's estimators on constructed cases, the filters, and the worse-answer builders and cache."""

import math
import random

import pytest
import torch

from rlhf_ray.algorithms.seam import answer_loglik, lowest_fraction, random_fraction, seam_score
from rlhf_ray.seam import (
    WorseAnswerCache,
    adv_answers,
    augment_pairs,
    build_worse_answers,
    contrast_answers,
    degrade_with_engine,
    degrader_messages,
    keep_worse,
    nearest_others,
    perturb,
)
from rlhf_ray.seam import contrast as contrast_module

ESTIMATORS = ("mass", "count", "disagree")


def score(gold_lp, gold_len, worse_lp, worse_len, gold_r, worse_r, **kw):
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return seam_score(t([gold_lp]), t([gold_len]), t([worse_lp]), t([worse_len]), t([gold_r]), t([worse_r]), **kw)[0]


# ---------------------------------------------------------------------- the score
def test_rm_ranking_gold_first_is_fully_seamless_under_every_estimator():
    # The PM also prefers gold (a higher per-token log-likelihood), so PM and RM agree on every worse answer.
    for est in ESTIMATORS:
        s = score(-4.0, 4, [-12.0, -9.0, -20.0], [4, 3, 5], 2.0, [1.0, -0.5, 1.9], estimator=est)
        assert s == pytest.approx(1.0), est


def test_rm_ranking_every_worse_answer_first_gives_the_minimum():
    gold_lp, gold_len, worse_lp, worse_len = -6.0, 3, [-4.0, -10.0, -3.0], [2, 5, 3]
    s_mass = score(gold_lp, gold_len, worse_lp, worse_len, 0.0, [1.0, 2.0, 0.5])
    # 1 - the PM's relative mass on the worse answers = the gold answer's share of [gold, worse] under the PM.
    ll = [gold_lp / gold_len] + [lp / n for lp, n in zip(worse_lp, worse_len)]
    assert float(s_mass) == pytest.approx(math.exp(ll[0]) / sum(math.exp(x) for x in ll))
    assert float(score(gold_lp, gold_len, worse_lp, worse_len, 0.0, [1.0, 2.0, 0.5], estimator="count")) == 0.0


def test_length_penalty_changes_the_score_of_a_long_worse_answer():
    # gold: 10 tokens, sum -20 (mean -2); worse: 100 tokens, sum -150 (mean -1.5), misjudged by the RM.
    args = (-20.0, 10, [-150.0], [100], 0.0, [1.0])
    per_token = score(*args, length_penalty="mean")
    raw_sum = score(*args, length_penalty="sum")
    # Per-token mean: the long answer looks likelier than gold (-1.5 > -2), so its misjudgement weighs 0.62.
    assert float(per_token) == pytest.approx(1 - math.exp(-1.5) / (math.exp(-2) + math.exp(-1.5)))
    # Raw sum: its 100 tokens make it e^-130 times less likely than gold; the misjudgement weighs nothing.
    assert float(raw_sum) == pytest.approx(1.0, abs=1e-12)
    assert answer_loglik(torch.tensor([-150.0]), torch.tensor([100]), "mean").item() == -1.5


def test_count_and_disagree_against_hand_values():
    # Gold: r 1.0, l -2 per token. Worse answers (l per token, r):
    #   a (-1, 2.0): RM misjudges; PM prefers a too -> h=1, agree (both rank a first)
    #   b (-3, 0.5): RM right; PM right                -> h=0, agree
    #   c (-1, 0.0): RM right; PM prefers c            -> h=0, disagree
    #   d (-5, 3.0): RM misjudges; PM right            -> h=1, disagree
    args = (-2.0, 1, [-1.0, -3.0, -1.0, -5.0], [1, 1, 1, 1], 1.0, [2.0, 0.5, 0.0, 3.0])
    assert float(score(*args, estimator="count")) == pytest.approx(1 - 2 / 4)
    assert float(score(*args, estimator="disagree")) == pytest.approx(1 - 2 / 4)
    # mass: the PM's weights on a and d over [gold, a, b, c, d].
    z = sum(math.exp(x) for x in (-2, -1, -3, -1, -5))
    assert float(score(*args)) == pytest.approx(1 - (math.exp(-1) + math.exp(-5)) / z)


def test_invalid_answers_carry_no_weight_and_unscorable_prompts_are_nan():
    t = torch.tensor
    gold_lp, gold_len, gold_r = t([-2.0, -2.0, -2.0]), t([1, 1, 1]), t([0.0, 0.0, math.nan])
    worse_lp, worse_len = t([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]]), t([[1, 1]] * 3)
    worse_r = t([[1.0, -1.0], [1.0, 5.0], [1.0, 1.0]])
    valid = t([[True, False], [False, False], [True, True]])
    for est in ESTIMATORS:
        s = seam_score(gold_lp, gold_len, worse_lp, worse_len, gold_r, worse_r, valid, estimator=est)
        # row 0: only the misjudged answer counts; row 1: no worse answers; row 2: a NaN gold reward.
        assert s[1].isnan() and s[2].isnan() and not s[0].isnan(), est
    count = seam_score(gold_lp, gold_len, worse_lp, worse_len, gold_r, worse_r, valid, estimator="count")
    assert count[0] == 0.0  # one valid answer, misjudged: 1 of 1
    # A NaN on one worse answer leaves that answer out, not the prompt: the other answer is scored alone.
    nan_worse = seam_score(t([-2.0]), t([1]), t([[-1.0, -1.0]]), t([[1, 1]]), t([0.0]), t([[math.nan, 1.0]]),
                           estimator="count")
    assert nan_worse.tolist() == [0.0]
    with pytest.raises(KeyError, match="unknown SEAM estimator"):
        seam_score(gold_lp, gold_len, worse_lp, worse_len, gold_r, worse_r, estimator="nope")


# ---------------------------------------------------------------------- the filters
@pytest.mark.parametrize("n,q,expected", [(10, 0.2, 2), (7, 0.2, 1), (5, 0.3, 1), (3, 0.1, 0), (10, 0.0, 0),
                                          (1, 0.5, 0), (10, 0.3, 3), (100, 0.29, 29)])
def test_lowest_fraction_drops_exactly_floor_qn_of_the_lowest(n, q, expected):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n))
    dropped = lowest_fraction(scores, q)
    assert len(dropped) == expected  # floor(q * N), by hand (0.2 * 10 and 0.29 * 100 are not exact in floats)
    kept = [i for i in range(n) if i not in dropped]
    assert all(scores[d] <= scores[k] for d in dropped for k in kept)


def test_lowest_fraction_skips_unscored_and_breaks_ties_by_position():
    scores = torch.tensor([0.5, math.nan, 0.1, 0.1, 0.9, math.nan, 0.1, 0.7, 0.6, 0.3, 0.2, 0.8])
    # 10 scored: floor(0.3 * 10) = 3 dropped, the three 0.1 ties at positions 2, 3, 6.
    assert lowest_fraction(scores, 0.3) == [2, 3, 6]
    assert lowest_fraction(scores, 0.2) == [2, 3]
    with pytest.raises(ValueError):
        lowest_fraction(scores, 1.0)


def test_random_fraction_drops_as_many_scored_rows_reproducibly():
    scores = torch.tensor([0.5, math.nan, 0.1, 0.4, 0.9, 0.3, 0.2, 0.8, 0.6, 0.7, 0.05])
    a = random_fraction(scores, 0.2, torch.Generator().manual_seed(3))
    assert len(a) == 2 and 1 not in a
    assert a == random_fraction(scores, 0.2, torch.Generator().manual_seed(3))
    draws = {tuple(random_fraction(scores, 0.2, torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(draws) > 5  # random, not the lowest every time


# ---------------------------------------------------------------------- worse answers
GOLDS = ["The capital of France is Paris, a city on the Seine.", "a a a a a a", "Yes.", "x",
         "Use a tyre lever to take the tyre off, find the hole, then patch it and pump it up again."]


def test_adv_is_deterministic_for_a_seed_and_never_the_gold_answer():
    for gold in GOLDS:
        answers = adv_answers(gold, 30, seed=7)
        assert answers == adv_answers(gold, 30, seed=7)
        assert answers != adv_answers(gold, 30, seed=8)
        assert gold not in answers and len(answers) == 30
    with pytest.raises(ValueError, match="empty"):
        perturb("   ", random.Random(0))


def test_adv_edits_exactly_the_asked_share_of_words(monkeypatch):
    from rlhf_ray.seam import adv

    # Character edits only, so that words keep their positions and every edit shows as one changed word.
    monkeypatch.setattr(adv, "EDITS", ("char_delete", "char_insert", "char_substitute"))
    gold = " ".join(f"word{i}" for i in range(40))
    for fraction, n in ((0.3, 12), (0.1, 4), (1.0, 40)):
        for s in range(5):
            out = perturb(gold, random.Random(s), fraction=fraction)
            assert sum(a != b for a, b in zip(gold.split(), out.split())) == n


def test_adv_keeps_the_answers_layout_and_its_answers_are_distinct():
    gold = "First line.\n\n    indented = code()\n- a list item\n"
    for s in range(20):
        out = perturb(gold, random.Random(s))
        assert out.count("\n") >= 2 and out != gold  # a word deletion may take one line break with it, never all
    answers = adv_answers("x", 10, seed=0)
    assert len(answers) == len(set(answers)) == 10 and "x" not in answers


def test_nearest_others_skips_near_duplicates_and_falls_back():
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, 0.5], [0.0, 1.0], [-1.0, 0.2]]),
                                        dim=1)
    near = nearest_others(emb, 2)
    assert near[0] == [2, 3]  # row 1 is a near-duplicate (cosine > 0.9): skipped; itself never
    assert near[3] == [2, 4]
    # Only row 4 is below the threshold for row 0 at max_cosine -0.5, so the nearest of the rest fills up.
    assert nearest_others(emb, 2, max_cosine=-0.5)[0] == [4, 1]


def test_contrast_never_returns_the_gold_answer(monkeypatch):
    prompts = ["p0", "p1", "p2", "p3"]
    golds = ["same answer", "same answer", "other", "third"]
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    monkeypatch.setattr(contrast_module, "embed", lambda texts, enc: emb[[prompts.index(t) for t in texts]])
    answers = contrast_answers(prompts, golds, 2, encoder_dir="unused")
    for gold, got in zip(golds, answers):
        assert gold not in got
    assert answers[0] == ["other", "third"]  # p1's answer equals p0's own gold: skipped
    assert answers[3] == ["other", "same answer"]


def test_contrast_with_the_minilm_encoder_finds_the_related_prompt():
    from rlhf_ray.models.assets import resolve_model

    prompts = ["How do I bake bread at home?", "How to fix a flat bicycle tire?", "What is a good bread recipe?",
               "How do I repair a puncture on my bike?"]
    answers = contrast_answers(prompts, ["bread", "tire", "recipe", "patch"], 1, resolve_model("all-minilm-l6-v2"))
    assert answers == [["recipe"], ["patch"], ["bread"], ["tire"]]


class FakeEngine:
    """Samples text from the per-prompt seed only, like vLLM with prompt_seeds; echoes the gold on demand."""

    def __init__(self, echo_every: int = 0):
        self.calls, self.echo_every = [], echo_every

    def generate(self, prompt_ids, sampling, prompt_seeds=None):
        from rlhf_ray.rollout.types import Rollouts

        self.calls.append(len(prompt_ids))
        out = Rollouts()
        for i, (p, seed) in enumerate(zip(prompt_ids, prompt_seeds)):
            for j in range(sampling.n):
                text = "" if self.echo_every and j == 0 else f"worse {seed % 1000} {j}"
                out.append(i, p, [1], [0.0], text, "stop")
        return out


class FakeTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return messages[1]["content"]

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [ord(c) % 50 for c in text]}


def test_degrader_prompt_and_dropping():
    msgs = degrader_messages("Why is the sky blue?", "Rayleigh scattering.")
    assert msgs[0]["role"] == "system" and "lower quality" in msgs[0]["content"]
    assert "Why is the sky blue?" in msgs[1]["content"] and "Rayleigh scattering." in msgs[1]["content"]
    kept = keep_worse([["  ", "gold ", "bad one"], ["x"]], ["gold", "y"])
    assert kept.answers == [["bad one"], ["x"]] and kept.dropped_empty == 1 and kept.dropped_gold == 1
    out = degrade_with_engine(FakeEngine(echo_every=1), FakeTokenizer(), ["q1", "q2"], ["g1", "g2"], 3, [11, 12])
    assert [len(a) for a in out.answers] == [2, 2] and out.dropped_empty == 2


def test_degrader_prompt_is_cut_in_its_question_and_answer_never_its_instructions(tiny_model_dir):
    from rlhf_ray.models import load_tokenizer
    from rlhf_ray.seam.degrade import SYSTEM, fit_degrader_prompt

    tok = load_tokenizer(tiny_model_dir)
    question, gold = "why " * 400 + "LAST TURN?", "FIRST WORDS " + "because " * 400
    ids = fit_degrader_prompt(tok, question, gold, 300)
    text = tok.decode(ids)
    assert len(ids) <= 300 and SYSTEM in text and "lower-quality answer only" in text
    assert "LAST TURN?" in text and "FIRST WORDS" in text
    short = fit_degrader_prompt(tok, "Why?", "Because.", 300)
    assert "Why?" in tok.decode(short) and "Because." in tok.decode(short)
    with pytest.raises(ValueError, match="instructions alone"):
        fit_degrader_prompt(tok, question, gold, 20)


def test_worse_answer_cache_reuses_and_keys_by_seed_and_settings(tmp_path):
    engine = FakeEngine()
    degrader = lambda q, g, k, seeds: degrade_with_engine(engine, FakeTokenizer(), q, g, k, seeds).answers  # noqa: E731
    cache = WorseAnswerCache(tmp_path / "gpt.jsonl")
    prompts, golds = ["q1", "q2", "q3"], ["g1", "g2", "g3"]
    first = build_worse_answers("gpt", prompts[:2], golds[:2], 3, 0, cache, degrader=degrader)
    # Built prompts come from the cache (a fresh reader of the same file): only q3 is built.
    again = build_worse_answers("gpt", prompts[::-1], golds[::-1], 3, 0, WorseAnswerCache(tmp_path / "gpt.jsonl"),
                                degrader=degrader)
    assert again[1:] == first[::-1] and engine.calls == [2, 1]
    # A prompt's answers do not depend on its batch: built afresh (no cache) in another batch, the same answers.
    alone = build_worse_answers("gpt", prompts[1:2], golds[1:2], 3, 0, degrader=degrader)
    assert alone[0] == first[1] and engine.calls == [2, 1, 1]
    other_seed = build_worse_answers("gpt", prompts[:1], golds[:1], 3, 1, cache, degrader=degrader)
    assert other_seed[0] != first[0] and engine.calls == [2, 1, 1, 1]
    adv = WorseAnswerCache(tmp_path / "adv.jsonl")
    a = build_worse_answers("adv", ["q"], ["one two three four"], 4, 0, adv, settings={"fraction": 0.3})
    b = build_worse_answers("adv", ["q"], ["one two three four"], 4, 0, adv, settings={"fraction": 0.6})
    assert a != b and len(adv.rows) == 2
    # A torn last line (a killed writer) is skipped and counted; the rest is kept.
    with open(tmp_path / "adv.jsonl", "a") as f:
        f.write('{"key": "abc", "answ')
    reread = WorseAnswerCache(tmp_path / "adv.jsonl")
    assert reread.torn == 1 and len(reread.rows) == 2
    with pytest.raises(ValueError, match="unknown SEAM variant"):
        build_worse_answers("gpt4", prompts, golds, 3, 0)


# ---------------------------------------------------------------------- scoring prompts
class CharTokenizer:
    eos_token_id = 0

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [ord(c) for c in text]}


def test_score_prompts_gathers_both_scorers_per_answer():
    from rlhf_ray.seam.scoring import score_prompts

    seen = {}

    def policy(prompts, answers):
        seen["answers"] = answers
        return [[-0.5 * (len(p) % 3 + 1)] * len(a) for p, a in zip(prompts, answers)]  # per-token lp by prompt

    def rewards(pairs):
        return [float(len(a)) for _, a in pairs]  # the RM likes long answers

    prompts, golds = [[1, 2], [3, 4, 5], [6]], ["abcd", "xy", ""]
    worse = [["a", "abcdefg"], ["xyz"], ["q"]]
    res = score_prompts(prompts, golds, worse, CharTokenizer(), policy, rewards, max_answer_tokens=6)
    # Answers are cut to 6 tokens; the policy sees EOS appended, the RM does not. The empty gold is not scored.
    assert [97, 98, 99, 100, 101, 102, 0] in seen["answers"] and len(seen["answers"]) == 6
    assert res.valid.tolist() == [[True, True], [True, False], [True, False]]
    assert res.misjudged.tolist() == [[False, True], [True, False], [False, False]]
    assert res.misjudgement_rate() == pytest.approx(2 / 4)
    assert res.scores[2].isnan()
    # Prompt 0: per-token lps are equal for all answers, so the mass is uniform over 3: one misjudged -> 1 - 1/3.
    assert float(res.scores[0]) == pytest.approx(2 / 3)
    count = score_prompts(prompts, golds, worse, CharTokenizer(), policy, rewards, estimator="count",
                          max_answer_tokens=6)
    assert count.scores[:2].tolist() == [0.5, 0.0]


def _scored(seam, gold_reward, worse_rewards, i):
    return {"prompt": f"p{i}", "format": "plain", "gold": f"gold{i}", "seam": seam, "gold_reward": gold_reward,
            "worse_reward": worse_rewards, "worse_answers": [f"w{i}_{j}" for j in range(len(worse_rewards))]}


def test_augment_takes_the_misjudged_answers_of_the_lowest_seam_prompts():
    rows = [_scored(0.9, 1.0, [2.0, 0.0], 0),  # high SEAM: its misjudged answer is not taken
            _scored(0.1, 1.0, [2.0, 0.5, 3.0], 1),  # lowest: w1_0 and w1_2 are misjudged
            _scored(None, None, [5.0], 2),  # unscored: never counted, never taken
            _scored(0.2, 1.0, [1.0, 0.0], 3),  # second lowest, but a tie is no misjudgement
            _scored(0.5, 0.0, [1.0], 4)]
    pairs, counts = augment_pairs(rows, 0.5, "seam")
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p1", "gold1", "w1_0"), ("p1", "gold1", "w1_2")]
    assert all(p["misjudged"] and p["format"] == "plain" for p in pairs)
    assert counts["scored"] == 4 and counts["lowest_prompts"] == 2 and counts["pairs"] == 2
    # The control: as many gold > worse pairs, drawn from every scored prompt, reproducibly for a seed.
    control, c = augment_pairs(rows, 0.5, "random", seed=3)
    assert len(control) == 2 and control == augment_pairs(rows, 0.5, "random", seed=3)[0]
    assert all(p["prompt"] != "p2" and p["rejected"] != p["chosen"] for p in control)
    draws = {tuple(p["rejected"] for p in augment_pairs(rows, 0.5, "random", seed=s)[0]) for s in range(20)}
    assert len(draws) > 5  # the control really is random over the pool of 8 pairs
    assert c["misjudged_pairs"] == sum(p["misjudged"] for p in control)
    with pytest.raises(ValueError, match="seam or random"):
        augment_pairs(rows, 0.5, "best")
