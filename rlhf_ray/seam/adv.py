"""SEAM-Adv worse answers: seeded perturbations of the gold answer, without TextAttack (ALGORITHMS.md §6.4).

A share of the words (default 30 %) each get one edit: a character deleted, inserted or substituted inside the word,
the word swapped with its neighbour, deleted, or a copy of another word of the answer inserted before it. The
whitespace between words (newlines, indentation) is kept; a result equal to the gold answer is never returned.
"""

import random
import re
import string

EDITS = ("char_delete", "char_insert", "char_substitute", "word_swap", "word_delete", "word_insert")
LETTERS = string.ascii_lowercase


def _edit_word(word: str, op: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    if op == "char_delete" and len(word) > 1:
        return word[:i] + word[i + 1:]
    if op == "char_substitute":
        return word[:i] + rng.choice([c for c in LETTERS if c != word[i].lower()]) + word[i + 1:]
    return word[:i] + rng.choice(LETTERS) + word[i:]  # char_insert, and char_delete of a one-letter word


def perturb(gold: str, rng: random.Random, fraction: float = 0.3) -> str:
    """One perturbation of `gold`: round(fraction * words) edits (at least one), applied right to left so that
    positions stay valid. Raises ValueError on an answer without words."""
    words = re.findall(r"\S+", gold)
    lead, *seps = re.split(r"\S+", gold)  # the whitespace before the first word, then after each word
    if not words:
        raise ValueError("SEAM-Adv cannot perturb an empty gold answer")
    n = max(1, round(fraction * len(words)))
    for pos in sorted(rng.sample(range(len(words)), min(n, len(words))), reverse=True):
        op = rng.choice(EDITS)
        if op == "word_swap" and len(words) > 1:
            other = pos + 1 if pos + 1 < len(words) else pos - 1
            words[pos], words[other] = words[other], words[pos]
        elif op == "word_delete" and len(words) > 1:
            del words[pos]
            sep = seps.pop(pos)
            if pos == len(words):  # the last word went: the one before it takes over its trailing whitespace
                seps[-1] = sep
        elif op == "word_insert":
            words.insert(pos, rng.choice(words))
            seps.insert(pos, " ")
        else:
            words[pos] = _edit_word(words[pos], op if op.startswith("char") else "char_insert", rng)
    out = lead + "".join(w + s for w, s in zip(words, seps))
    if out == gold:  # a swap of equal words, or a delete then an insert of the same word: force a visible edit
        words[0] = _edit_word(words[0], "char_insert", rng)
        out = lead + "".join(w + s for w, s in zip(words, seps))
    return out


def adv_answers(gold: str, k: int, seed: int, fraction: float = 0.3, max_tries: int = 20) -> list[str]:
    """Up to k distinct perturbations of `gold` from one seeded stream (the caller derives the seed from the prompt
    and the run's seed); a short answer may have fewer than k distinct ones within k * max_tries draws."""
    rng, out, seen = random.Random(seed), [], set()
    for _ in range(k * max_tries):
        text = perturb(gold, rng, fraction)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == k:
                break
    return out
