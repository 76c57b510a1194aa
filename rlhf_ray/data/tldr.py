"""OpenAI 'Learning to summarize from human feedback' TL;DR comparisons."""

import hashlib

from .reading import require_text
from .report import BadRow

PROMPT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"


def parse_tldr_row(row: object) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("info"), dict):
        raise BadRow("missing object field 'info'")
    info = row["info"]
    post = require_text(info, "post")
    note = ""
    if isinstance(info.get("id"), str) and info["id"]:
        post_id = info["id"]
    else:  # some batches (edit_b2_eval_test) carry no id: the post text itself identifies the post
        post_id, note = "text:" + hashlib.sha256(post.encode()).hexdigest()[:16], "no post id, grouped by post text"
    prompt = PROMPT.format(
        subreddit=info.get("subreddit") or "", title=info.get("title") or "", post=post.strip()
    )
    summaries, choice = row.get("summaries"), row.get("choice")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise BadRow("field 'summaries' is not a list of two summaries")
    if type(choice) is not int or choice not in (0, 1):  # not 1.0 or True: an index
        raise BadRow(f"field 'choice' is {choice!r}, not 0 or 1")
    texts = [require_text(s, "text") for s in summaries]
    return {
        "prompt": prompt,
        "chosen": " " + texts[choice].strip(),
        "rejected": " " + texts[1 - choice].strip(),
        "group": post_id,  # split by post: the same post appears in several comparisons
        "format": "plain",
        "note": note,
    }
