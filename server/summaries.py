"""Summaries, topics, action items and key points of a transcript, and chat with a transcript as context.

Out of the box this is offline: an extractive method (TextRank over the transcript's sentences blended with
word-frequency scores; topics from frequent content terms; action items from sentences with obligation or
future cues). With ``VOXLANE_LLM_URL`` (+ ``VOXLANE_LLM_MODEL``, ``VOXLANE_LLM_API_KEY``) set, an
OpenAI-compatible chat-completions endpoint writes them instead; if it fails, the automatic summary falls
back to the extractive one and says so (``model_used``, ``error``).

When a transcript completes (live stream stopped, upload/job/conversation transcribed),
:func:`summarize_transcript` summarizes it in a background task: the result is stored in the transcript's
``summary`` field and published as a ``summary`` message, never delaying ``completed``. The jobs of
``POST /api/summary/`` live in memory (:class:`SummaryJobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx

from protocol import Summary
from server.settings import Settings
from server.speakers import named_segments
from server.storage.base import utcnow

log = logging.getLogger("voxlane.summaries")
EXTRACTIVE = "extractive"
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


# ---------------------------------------------------------------- the result


@dataclass
class SummaryResult:
    summary: str
    topics: list[str] = field(default_factory=list)
    action_items: list[str] = field(default_factory=list)
    key_points: list[str] = field(default_factory=list)
    model_used: str = EXTRACTIVE
    error: str | None = None

    def stored(self) -> dict[str, Any]:
        """What goes in the transcript's ``summary`` field."""
        out = {"summary": self.summary, "topics": self.topics, "action_items": self.action_items,
               "key_points": self.key_points, "model_used": self.model_used, "created_at": utcnow()}
        if self.error:
            out["error"] = self.error
        return out

    def message(self) -> Summary:
        return Summary(summary=self.summary, topics=self.topics, action_items=self.action_items,
                       key_points=self.key_points)


def transcript_text(segments: list[dict[str, Any]], speakers: bool = True) -> str:
    """The transcript as lines of text (``Speaker: text`` where a speaker is known)."""
    lines = []
    for seg in segments:
        text = " ".join(str(seg.get("text") or "").split())
        if not text:
            continue
        who = seg.get("speaker") if speakers else None
        lines.append(f"{who}: {text}" if who else text)
    return "\n".join(lines)


# ---------------------------------------------------------------- extractive (offline)


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
    out, used = [], 0
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


# ---------------------------------------------------------------- an OpenAI-compatible chat endpoint


class LlmError(RuntimeError):
    pass


class LlmNotConfigured(LlmError):
    pass


def llm_configured(settings: Settings) -> bool:
    return bool(settings.llm_url)


def _completions_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


async def chat_completion(settings: Settings, messages: list[dict[str, str]], *, model: str | None = None,
                          temperature: float | None = None, max_tokens: int | None = None,
                          json_reply: bool = False) -> tuple[str, dict[str, int], str]:
    """(reply text, usage {prompt, completion, total}, model) from the configured endpoint."""
    if not settings.llm_url:
        raise LlmNotConfigured("no LLM is configured: set VOXLANE_LLM_URL (an OpenAI-compatible /v1 endpoint)"
                               " and VOXLANE_LLM_MODEL")
    model = model or settings.llm_model
    if not model:
        raise LlmNotConfigured("VOXLANE_LLM_MODEL is not set (the model name to ask VOXLANE_LLM_URL for)")
    body: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if json_reply:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    try:
        async with httpx.AsyncClient(timeout=settings.llm_timeout) as client:
            r = await client.post(_completions_url(settings.llm_url), json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise LlmError(f"the LLM endpoint could not be reached: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise LlmError(f"the LLM endpoint answered {r.status_code}: {r.text[:300]}")
    try:
        data = r.json()
        content = data["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise LlmError(f"the LLM endpoint's answer is not a chat completion: {r.text[:300]}") from None
    usage = data.get("usage") or {}
    counts = {"prompt": int(usage.get("prompt_tokens") or 0), "completion": int(usage.get("completion_tokens") or 0)}
    counts["total"] = int(usage.get("total_tokens") or counts["prompt"] + counts["completion"])
    return content, counts, str(data.get("model") or model)


def clip_context(text: str, limit: int = MAX_CONTEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n[… transcript shortened …]\n" + text[-half:]


SUMMARY_PROMPT = (
    "You summarize transcripts of spoken conversations. Reply with one JSON object and nothing else, with the"
    " keys: \"summary\" (a paragraph{length}), \"topics\" (a list of short topic names), \"action_items\" (a"
    " list of tasks someone committed to or was asked to do; empty if none), \"key_points\" (a list of the most"
    " important points, one sentence each). Use only what the transcript says.")


def _json_object(text: str) -> dict[str, Any]:
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object")
    obj = json.loads(text[start:end + 1])
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [line.strip(" -•*\t") for line in value.splitlines()]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


async def llm_summary(settings: Settings, text: str, *, model: str | None = None,
                      max_words: int | None = None) -> SummaryResult:
    length = f" of at most {max_words} words" if max_words else ""
    messages = [{"role": "system", "content": SUMMARY_PROMPT.format(length=length)},
                {"role": "user", "content": "Transcript:\n" + clip_context(text)}]
    content, _, used = await chat_completion(settings, messages, model=model, temperature=0.2)
    try:
        obj = _json_object(content)
    except ValueError:  # a model that ignored the format: its text is the summary
        return SummaryResult(summary=content.strip(), model_used=used)
    return SummaryResult(summary=str(obj.get("summary") or "").strip(), topics=_str_list(obj.get("topics")),
                         action_items=_str_list(obj.get("action_items")),
                         key_points=_str_list(obj.get("key_points")), model_used=used)


async def summarize_texts(settings: Settings, texts: list[str], *, model_name: str | None = None,
                          max_words: int | None = None, fallback: bool = True) -> SummaryResult:
    """The LLM's summary when one is configured (and not ``model_name='extractive'``), else the extractive one.
    With ``fallback``, an LLM failure gives the extractive summary with the error noted."""
    if llm_configured(settings) and model_name != EXTRACTIVE:
        try:
            return await llm_summary(settings, "\n".join(texts), model=model_name, max_words=max_words)
        except LlmError as exc:
            if not fallback:
                raise
            log.warning("LLM summary failed (%s); using the extractive summary", exc)
            result = await asyncio.to_thread(extractive_summary, texts, max_words=max_words)
            result.error = str(exc)
            return result
    return await asyncio.to_thread(extractive_summary, texts, max_words=max_words)


# ---------------------------------------------------------------- when a transcript completes

_tasks: dict[int, set[asyncio.Task]] = {}


async def summarize_transcript(services: Any, transcript_id: str) -> asyncio.Task:
    """Summarize a completed transcript in the background (stored, then published as a ``summary`` message);
    returns the task at once, so the caller's ``completed`` is never delayed."""
    task = asyncio.create_task(_summarize_stored(services, transcript_id), name=f"summary-{transcript_id}")
    running = _tasks.setdefault(id(services), set())
    running.add(task)
    task.add_done_callback(running.discard)
    return task


async def _summarize_stored(services: Any, transcript_id: str) -> SummaryResult | None:
    try:
        row = await services.store.get_transcript(transcript_id)
        segments = await named_segments(services.store, row or {"id": transcript_id})
        texts = [transcript_text([s]) for s in segments]
        if not any(texts):
            return None
        result = await summarize_texts(services.settings, texts)
        if await services.store.update_transcript(transcript_id, summary=result.stored()) is None:
            return None  # deleted meanwhile
        await services.hub.publish(transcript_id, result.message())
        from server.webhooks import emit_event  # webhooks import summaries' neighbours; keep the cycle lazy

        await emit_event(services, transcript_id, "conversation.summarized", result.stored(), key="summary")
        return result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("summarizing transcript %s failed", transcript_id)
        return None


async def stop(services: Any) -> None:
    """Cancel the summaries still running for these services (the app is stopping)."""
    tasks = list(_tasks.pop(id(services), ()))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_idle(services: Any) -> None:
    """Wait for the running summaries of these services (tests, CLI)."""
    tasks = list(_tasks.get(id(services), ()))
    if tasks:
        await asyncio.wait(tasks)


# ---------------------------------------------------------------- summary jobs (POST /api/summary/)


@dataclass
class SummaryJob:
    id: str
    owner: str | None
    status: str = "processing"  # processing | completed | failed
    message: str = "summarizing"
    progress: float = 0.0
    result: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    task: asyncio.Task | None = None


class SummaryJobs:
    """Summary jobs in memory: the newest ``keep`` for ``ttl`` seconds (a job is cheap to ask for again)."""

    def __init__(self, keep: int = 1000, ttl: float = 24 * 3600) -> None:
        self.keep = keep
        self.ttl = ttl
        self._jobs: OrderedDict[str, SummaryJob] = OrderedDict()

    def get(self, job_id: str) -> SummaryJob | None:
        self._expire()
        return self._jobs.get(job_id)

    def start(self, services: Any, owner: str | None, work) -> SummaryJob:
        self._expire()
        job = SummaryJob(id=str(uuid.uuid4()), owner=owner)
        self._jobs[job.id] = job
        while len(self._jobs) > self.keep:
            _, old = self._jobs.popitem(last=False)
            if old.task is not None and not old.task.done():
                old.task.cancel()

        async def run() -> None:
            try:
                job.result = await work()
                job.status, job.message, job.progress = "completed", "summary ready", 100.0
            except asyncio.CancelledError:
                job.status, job.message = "failed", "cancelled"
                raise
            except Exception as exc:
                job.status, job.message = "failed", str(exc) or type(exc).__name__
                if not isinstance(exc, LlmError):
                    log.exception("summary job %s failed", job.id)

        job.task = asyncio.create_task(run(), name=f"summary-job-{job.id}")
        running = _tasks.setdefault(id(services), set())
        running.add(job.task)
        job.task.add_done_callback(running.discard)
        return job

    def _expire(self) -> None:
        cutoff = time.time() - self.ttl
        while self._jobs:
            job = next(iter(self._jobs.values()))
            if job.created >= cutoff:
                break
            self._jobs.popitem(last=False)
            with contextlib.suppress(Exception):
                if job.task is not None and not job.task.done():
                    job.task.cancel()
