"""The offline summarizer: TextRank over sentences blended with word frequency, topics from frequent content
terms, action items from obligation and future cues."""

from __future__ import annotations

import math
import re
from collections import Counter

from server.features.summaries.result import SummaryResult

MAX_CONTEXT_CHARS = 60_000
"""Transcript text sent to the LLM at most (the middle is cut, beginning and end kept)."""

STOPWORDS = frozenset("""
a about above after again against ago ah all almost also although always am among an and another any anybody
anyone anything anyway are aren't around as at away back be because been before being below between both but by
can can't cannot could couldn't did didn't do does doesn't doing don't done down during each either else enough
even ever every everybody everyone everything few for from further get gets getting go goes going gone gonna got
gotten had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how however i i'd i'll i'm i've if in into is isn't it it's its itself just kind know known let let's like likely
lot made make makes making many may maybe me mean might mine more most much must my myself need needs neither
never no nobody none nor not nothing now of off oh ok okay on once one ones only or other others otherwise our
ours ourselves out over own perhaps please put quite rather really right said same say says see seem seems she
she'd she'll she's should shouldn't since so some somebody someone something sometimes somewhat still such sure
take than that that's the their theirs them themselves then there there's these they they'd they'll they're
they've thing things think this those though through thus to together too toward towards um uh under until up
upon us use used very via want wanted wants was wasn't way we we'd we'll we're we've well went were weren't what
what's whatever when where whether which while who who's whom whose why will with within without won't would
wouldn't yeah yes yet you you'd you'll you're you've your yours yourself yourselves yknow mm hmm mhm thee thou
thy thine hath doth shall unto also upon going mm-hmm uh-huh uh-uh hmm-hmm
""".split())
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_ACTION_CUE = re.compile(
    r"\b(?:need(?:s)? to|have to|has to|must|should|will|shall|going to|gonna|let'?s|let us|action items?|"
    r"to-?dos?|follow(?:[- ])?up|make sure|deadline|next steps?|i'll|we'll|you'll|they'll)\b", re.IGNORECASE)


def split_sentences(texts: list[str]) -> list[str]:
    """Sentences by punctuation; unpunctuated text (some engines, some corpora) stays one sentence per piece,
    cut at ~40 words so one long piece cannot swallow the summary."""
    out: list[str] = []
    for text in texts:
        for piece in _SENTENCE_END.split(" ".join(text.split())):
            words = piece.split()
            for i in range(0, len(words), 40):
                chunk = " ".join(words[i:i + 40]).strip()
                if chunk:
                    out.append(chunk)
    return out


def content_words(text: str) -> list[str]:
    words = []
    for w in _WORD.findall(text.lower().replace("\u2019", "'")):
        w = w.removesuffix("'s").strip("'-")
        if len(w) > 2 and w not in STOPWORDS:
            words.append(w)
    return words


def _pagerank(sets: list[set[str]], iterations: int = 30, damping: float = 0.85) -> list[float]:
    """TextRank: sentences are nodes, shared content words (normalised by log length) the edge weights."""
    n = len(sets)
    if n == 0:
        return []
    weights: list[dict[int, float]] = [{} for _ in range(n)]
    for i in range(n):
        if len(sets[i]) < 2:
            continue
        for j in range(i + 1, n):
            if len(sets[j]) < 2:
                continue
            shared = len(sets[i] & sets[j])
            if shared:
                w = shared / (math.log(len(sets[i])) + math.log(len(sets[j])))
                weights[i][j] = weights[j][i] = w
    totals = [sum(w.values()) for w in weights]
    rank = [1.0 / n] * n
    for _ in range(iterations):
        rank = [(1 - damping) / n + damping * sum(rank[j] * w / totals[j] for j, w in weights[i].items())
                for i in range(n)]
    return rank


def _normalise(values: list[float]) -> list[float]:
    top = max(values, default=0.0)
    return [v / top if top > 0 else 0.0 for v in values]


def _topics(sentences: list[str], limit: int = 6) -> list[str]:
    """Frequent content terms: two-word terms seen at least twice first, then single words (noun-ish: no
    adverbs, no -ing forms unless frequent)."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    for sentence in sentences:
        tokens = [w.removesuffix("'s").strip("'-") for w in _WORD.findall(sentence.lower().replace("\u2019", "'"))]
        for a, b in zip(tokens, tokens[1:], strict=False):
            if a not in STOPWORDS and b not in STOPWORDS and len(a) > 2 and len(b) > 2:
                bigrams[f"{a} {b}"] += 1
        unigrams.update(w for w in tokens if len(w) > 3 and w not in STOPWORDS and not w.endswith("ly"))
    scored: list[tuple[float, str]] = [(n * 1.6, term) for term, n in bigrams.items() if n >= 2]
    scored += [(n * (0.6 if w.endswith("ing") else 1.0), w) for w, n in unigrams.items()]
    scored.sort(key=lambda x: (-x[0], x[1]))
    minimum = 2 if sum(unigrams.values()) >= 60 else 1
    out: list[str] = []
    for score, term in scored:
        if score < minimum or len(out) >= limit:
            continue
        if any(term in t.split() or t in term.split() for t in out):
            continue  # "printed book" and "book": keep the first
        out.append(term)
    return out


def action_items(sentences: list[str], limit: int = 10) -> list[str]:
    out: list[str] = []
    for sentence in sentences:
        if _ACTION_CUE.search(sentence) and len(sentence.split()) >= 3 and sentence not in out:
            out.append(sentence)
        if len(out) >= limit:
            break
    return out


def _cap_words(sentences: list[str], max_words: int | None) -> list[str]:
    if not max_words:
        return sentences
    out: list[str] = []
    used = 0
    for s in sentences:
        words = s.split()
        if used + len(words) > max_words:
            if not out:
                out.append(" ".join(words[:max_words]) + "…")
            break
        out.append(s)
        used += len(words)
    return out


def extractive_summary(texts: list[str], *, max_words: int | None = None, sentences_in_summary: int | None = None,
                       key_points: int = 5) -> SummaryResult:
    """Summary, topics, action items and key points picked from the text itself (no model)."""
    sentences = split_sentences([t for t in texts if t and t.strip()])
    if not sentences:
        return SummaryResult(summary="")
    words = [content_words(s) for s in sentences]
    freq = Counter(w for ws in words for w in ws)
    top_freq = max(freq.values(), default=1)
    freq_score = [sum(freq[w] / top_freq for w in ws) / math.sqrt(len(ws) + 1) for ws in words]
    candidates = sorted(range(len(sentences)), key=lambda i: -freq_score[i])[:300]  # keeps TextRank O(300²)
    ranks = dict(zip(candidates, _normalise(_pagerank([set(words[i]) for i in candidates])), strict=True))
    freq_norm = _normalise(freq_score)
    score = {i: 0.5 * ranks.get(i, 0.0) + 0.5 * freq_norm[i] for i in candidates}
    substantial = [i for i in candidates if len(sentences[i].split()) >= 4] or candidates
    ordered = sorted(substantial, key=lambda i: (-score[i], i))
    k = sentences_in_summary or max(1, min(5, round(len(sentences) * 0.2)))
    chosen = sorted(ordered[:k])
    summary_sentences = _cap_words([sentences[i] for i in chosen], max_words)
    points = [sentences[i] for i in sorted(ordered[:key_points])]
    return SummaryResult(summary=" ".join(summary_sentences), topics=_topics(sentences),
                         action_items=action_items(sentences), key_points=points)
