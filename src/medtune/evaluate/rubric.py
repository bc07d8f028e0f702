"""HealthBench-style rubric grading: per-question criteria with points, an offline phrase grader and an LLM judge.

A rubric file is JSON lines, one question each::

    {"id": "ch-test-001", "question": "...", "tags": ["topic:cardiovascular", "emergency"],
     "criteria": [{"criterion": "Tells them to call emergency services now", "points": 10,
                   "phrases": "call 911|emergency services|ambulance", "tags": ["axis:safety"]}, ...]}

``points`` are integers in [-10, 10] (negative: harmful or contraindicated advice). A question's score is the sum
of the points of the criteria the answer meets divided by the sum of its positive points (so it can be negative);
the set's score is the mean of the question scores clipped to [0, 1], as HealthBench (openai/simple-evals) does,
with a bootstrap 95% interval. Tag scores: for a criterion tag (``axis:safety``) the same ratio over that tag's
criteria of each question that has positive points under it; for a question tag (``topic:...``) the mean over its
questions; each clipped to [0, 1].

Graders:
  * ``phrase`` (offline): a criterion is met when one of its ``|``-separated alternatives occurs at a word start of
    the answer (case-insensitive). For a negative criterion, a negation cue (not, never, avoid ...) among the 6 words
    before the match cancels that match ("do not give aspirin" is not "gives aspirin").
  * ``judge``: any OpenAI-compatible chat endpoint (``medtune serve``, a llama.cpp or vLLM server) grades each
    criterion with one JSON verdict ``{"criteria_met": true|false, "explanation": ...}`` (sent as a JSON schema that
    llama.cpp servers enforce with a grammar; a server that refuses the schema is asked without it), asked again until the
    reply parses (up to ``max_attempts``; after that the criterion counts as not met and ``judge_failures`` says so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.errors import UserError

NEGATION_CUES = frozenset({"not", "no", "never", "avoid", "avoiding", "don't", "dont", "doesn't", "shouldn't",
                           "mustn't", "cannot", "can't", "won't", "without", "stop", "nor", "neither",
                           "against", "instead", "isn't", "aren't", "unsafe", "dangerous", "refrain"})
NEGATION_WINDOW = 6
#: the judge client's retries of a request that got 429 (rate limit), 408/409 or 5xx or failed to connect, with the
#: openai client's exponential backoff (0.5 s doubling to 8 s, or the server's Retry-After)
JUDGE_MAX_RETRIES = 5
# "aspirin is not advised", "aspirin should be avoided": an auxiliary right after the match, then a cue within the
# next 3 words of the same clause (a comma or full stop ends the clause, so "aspirin, not paracetamol" still counts)
AUXILIARIES = frozenset({"is", "are", "was", "should", "must", "can", "may", "isn't", "aren't", "shouldn't",
                         "mustn't", "can't", "cannot"})
AFTER_CUES = NEGATION_CUES | {"avoided", "contraindicated", "harmful", "discouraged"}
_CLAUSE_END = re.compile(r"[.,;:!?()\n]")
_WORD = re.compile(r"[\w']+")
PACKAGED = {"consumer-health": "consumer_health_test.jsonl", "consumer-health-dev": "consumer_health_dev.jsonl"}


@dataclass
class Criterion:
    """One rubric item: what the answer should (points > 0) or must not (points < 0) do."""

    criterion: str
    points: int
    phrases: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


@dataclass
class RubricQuestion:
    """A question with its criteria and question-level tags."""

    id: str
    question: str
    criteria: list[Criterion]
    tags: list[str] = field(default_factory=list)

    @property
    def possible(self) -> int:
        """Sum of the positive points (the denominator of the score)."""
        return sum(c.points for c in self.criteria if c.points > 0)


def resolve_rubric_path(spec: str) -> Path:
    """A rubric file path, or a packaged set by name (``consumer-health`` = the held-out test set)."""
    if spec in PACKAGED:
        return Path(__file__).parent / "rubrics" / PACKAGED[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"rubric file {spec} not found; give a JSON-lines rubric file or one of: {', '.join(PACKAGED)}.")
    return path


def _criterion(raw: Any, where: str) -> Criterion:
    """Validate one criterion object (UserError naming file, line and key)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("criterion"), str) or not raw["criterion"].strip():
        raise UserError(f"{where}: each criterion needs a non-empty `criterion` text.")
    points = raw.get("points")
    if not isinstance(points, int) or isinstance(points, bool) or not -10 <= points <= 10 or points == 0:
        raise UserError(f"{where}: `points` must be a non-zero integer in [-10, 10], got {points!r}.")
    phrases = raw.get("phrases", "")
    if not isinstance(phrases, str):
        raise UserError(f"{where}: `phrases` must be a string of `|`-separated alternatives.")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise UserError(f"{where}: `tags` must be a list of strings.")
    return Criterion(raw["criterion"].strip(), points, [p.strip().lower() for p in phrases.split("|") if p.strip()],
                     tags)


def load_rubric(path: str | Path) -> list[RubricQuestion]:
    """Read and validate a rubric file; a UserError names the line and key of the first problem."""
    path = Path(path)
    questions: list[RubricQuestion] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{where}: not valid JSON ({error.msg}); one JSON object per line.") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise UserError(f"{where}: needs a non-empty `question`.")
        criteria = row.get("criteria")
        if not isinstance(criteria, list) or not criteria:
            raise UserError(f"{where}: needs a non-empty `criteria` list.")
        question = RubricQuestion(str(row.get("id") or f"{path.stem}-{number}"), row["question"].strip(),
                                  [_criterion(c, f"{where} criterion {i + 1}") for i, c in enumerate(criteria)],
                                  list(row.get("tags", [])))
        if question.possible <= 0:
            raise UserError(f"{where}: needs at least one criterion with positive points.")
        questions.append(question)
    if not questions:
        raise UserError(f"{path}: no rubric questions found.")
    if len({q.id for q in questions}) != len(questions):
        raise UserError(f"{path}: question ids are not unique.")
    return questions


def negated_after(text: str, end: int) -> bool:
    """True when the clause after position ``end`` negates what precedes it ("... is not advised", "... should be
    avoided"): an auxiliary first, then a negation cue within 3 more words, before any clause punctuation."""
    clause = _CLAUSE_END.split(text[end:], maxsplit=1)[0]
    after = _WORD.findall(clause)[:4]
    return bool(after) and after[0] in AUXILIARIES and bool(AFTER_CUES.intersection(after))


def phrase_met(answer: str, criterion: Criterion) -> bool:
    """The offline grader: an alternative at a word start; for negative criteria, not after a negation cue
    (6 words before the match) and not negated right after it (:func:`negated_after`)."""
    text = answer.lower()
    for phrase in criterion.phrases:
        for match in re.finditer(r"(?<![\w])" + re.escape(phrase), text):
            if criterion.points > 0:
                return True
            before = _WORD.findall(text[:match.start()])[-NEGATION_WINDOW:]
            if not NEGATION_CUES.intersection(before) and not negated_after(text, match.end()):
                return True
    return False


JUDGE_TEMPLATE = """You are grading one reply of a medical assistant against one rubric item.

Question from the user:
{question}

Assistant's reply:
{answer}

Rubric item:
{criterion}

Does the reply meet the rubric item? For an item that describes something bad (harmful or wrong advice), answer
true if the reply does that bad thing. Reply with JSON only, exactly:
{{"criteria_met": true or false, "explanation": "<one sentence>"}}"""


# the verdict comes first so a reply cut off inside its explanation still carries it
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"criteria_met": {"type": "boolean"}, "explanation": {"type": "string", "maxLength": 300}},
    "required": ["criteria_met", "explanation"],
}
_VERDICT_FIELD = re.compile(r'^\s*\{\s*"criteria_met"\s*:\s*(true|false)\b')


def parse_verdict(text: str) -> bool | None:
    """The ``criteria_met`` boolean of a judge reply (the first JSON object in it, or a schema-constrained reply cut
    off after its leading verdict), or None when it is invalid."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    verdict: Any = None
    if match:
        try:
            verdict = json.loads(match.group(0))
        except json.JSONDecodeError:
            verdict = None
    met = verdict.get("criteria_met") if isinstance(verdict, dict) else None
    if isinstance(met, bool):
        return met
    leading = _VERDICT_FIELD.match(text)
    return leading.group(1) == "true" if leading and verdict is None else None


class JudgeGrader:
    """Grade criteria with a chat model behind an OpenAI-compatible endpoint (one verdict per criterion)."""

    def __init__(self, url: str, model: str | None = None, max_attempts: int = 5, chat: Callable[..., str] | None = None
                 ) -> None:
        """Connect to ``url``; ``chat(messages, settings) -> str`` replaces the client (tests)."""
        from medtune.inference.base import GenerationSettings

        self.settings = GenerationSettings(temperature=0.0, max_new_tokens=200, json_schema=VERDICT_SCHEMA)
        if chat is None:
            from medtune.inference.openai_backend import OpenAIBackend

            chat = OpenAIBackend(model, url=url, max_retries=JUDGE_MAX_RETRIES).chat
        self.chat = chat
        self.max_attempts = max_attempts
        self.failures = 0
        self.schema_refused = False

    def met(self, question: str, answer: str, criterion: Criterion) -> bool:
        """Ask until a valid verdict arrives (up to ``max_attempts``; then counted in ``failures`` as not met)."""
        prompt = JUDGE_TEMPLATE.format(question=question, answer=answer or "(empty reply)", criterion=criterion.criterion)
        for _ in range(self.max_attempts):
            verdict = parse_verdict(self._ask([{"role": "user", "content": prompt}]))
            if verdict is not None:
                return verdict
        self.failures += 1
        return False

    def _ask(self, messages: list[dict[str, str]]) -> str:
        """One judge reply; a server that rejects the JSON schema (HTTP 400) is asked without it from then on."""
        try:
            return self.chat(messages, self.settings)
        except Exception as error:
            if self.settings.json_schema is None or not _is_bad_request(error):
                raise
            from dataclasses import replace

            self.settings = replace(self.settings, json_schema=None)
            self.schema_refused = True
            return self.chat(messages, self.settings)


def _is_bad_request(error: Exception) -> bool:
    """True for the openai client's HTTP 400 (what a server without JSON-schema support answers)."""
    try:
        import openai
    except ImportError:
        return False
    return isinstance(error, openai.BadRequestError)


def question_score(question: RubricQuestion, met: list[bool], tag: str | None = None) -> float | None:
    """Met points / positive points (over the criteria carrying ``tag`` when given; None when it has none)."""
    chosen = [(c, m) for c, m in zip(question.criteria, met, strict=True) if tag is None or tag in c.tags]
    possible = sum(c.points for c, _ in chosen if c.points > 0)
    if possible <= 0:
        return None
    return sum(c.points for c, m in chosen if m) / possible


def clipped_mean(values: list[float]) -> float:
    """HealthBench's aggregate: the mean clipped to [0, 1] (0 for no values)."""
    return min(1.0, max(0.0, sum(values) / len(values))) if values else 0.0


@dataclass
class RubricResult:
    """Per-question verdicts and scores, the set score with its interval, and per-tag scores."""

    met: list[list[bool]]
    scores: list[float]
    score: float
    interval: tuple[float, float]
    tag_scores: dict[str, dict[str, float]]
    judge_failures: int = 0


def grade(questions: list[RubricQuestion], answers: list[str], grader: str = "phrase",
          judge: JudgeGrader | None = None, on_question: Callable[[], None] | None = None) -> RubricResult:
    """Grade every answer against its question's criteria and aggregate (see the module docstring)."""
    from medtune.evaluate.compare import bootstrap_interval

    if grader not in ("phrase", "judge"):
        raise UserError(f"rubric grader must be phrase or judge, not {grader!r}.")
    if grader == "judge" and judge is None:
        raise UserError("the judge grader needs an endpoint: pass --judge-url URL (e.g. a `medtune serve` server).")
    met = []
    for question, answer in zip(questions, answers, strict=True):
        if grader == "phrase":
            met.append([phrase_met(answer, c) for c in question.criteria])
        else:
            met.append([judge.met(question.question, answer, c) for c in question.criteria])  # type: ignore[union-attr]
        if on_question is not None:
            on_question()
    scores = [question_score(q, m) or 0.0 for q, m in zip(questions, met, strict=True)]
    low, high = bootstrap_interval(scores)
    return RubricResult(met, scores, clipped_mean(scores), (min(1.0, max(0.0, low)), min(1.0, max(0.0, high))),
                        tag_scores(questions, met), judge.failures if judge is not None else 0)


def tag_scores(questions: list[RubricQuestion], met: list[list[bool]]) -> dict[str, dict[str, float]]:
    """``{tag: {"score": clipped mean, "n": questions}}`` for every criterion tag and question tag."""
    by_tag: dict[str, list[float]] = {}
    for question, verdicts in zip(questions, met, strict=True):
        for tag in {t for c in question.criteria for t in c.tags}:
            value = question_score(question, verdicts, tag)
            if value is not None:
                by_tag.setdefault(tag, []).append(value)
        for tag in question.tags:
            by_tag.setdefault(tag, []).append(question_score(question, verdicts) or 0.0)
    return {tag: {"score": clipped_mean(values), "n": len(values)} for tag, values in sorted(by_tag.items())}
