"""Reading a message in its conversation: which words carry content, when a short message continues the
turns before it, and the sentence windows of a long message.

A classifier trained on single questions cannot read "go on" or "and with beers on top?" alone: the
:class:`medtune.guard.Guard` reads such a follow-up together with the user turns it continues
(:func:`continues`), and reads the end of a long message on its own (:func:`sentence_windows`), because the
classifier reads only its first 64 tokens.
"""

from __future__ import annotations

import re

#: Short follow-ups ("what should I do?") after an earlier red flag keep the referral: at most this many words.
FOLLOW_UP_WORDS = 25
#: A message of at most this many words and at most FOLLOW_UP_CONTENT_WORDS content words after earlier user
#: turns ("go on", "and with beers on top?") is read together with them: a classifier trained on single
#: questions cannot read a follow-up alone. A short message with more content ("Different question: what are
#: the symptoms of type 2 diabetes?") stands on its own.
FOLLOW_UP_CONTEXT_WORDS = 12
FOLLOW_UP_CONTENT_WORDS = 3
#: Words that steer a conversation rather than say what it is about (besides English stop words).
#: A follow-up with 2..FOLLOW_UP_CONTENT_WORDS content words continues the conversation only when it says so: it
#: opens with a continuation word ("and", "what about", "ok so") or refers back ("it", "them", "that one");
#: "How much ibuprofen can I take for back pain?" after a refused question stands on its own.
CONTINUATION_OPENERS = frozenset(["and", "also", "plus", "but", "or", "so", "then", "now", "what", "how", "about", "with", "ok", "okay", "and?", "well"])
BACK_REFERENCES = frozenset(["it", "its", "it's", "them", "they", "those", "these", "that", "this", "one", "ones", "same", "more"])
CONVERSATION_WORDS = frozenset(["ok", "okay", "yes", "yeah", "yep", "sure", "thanks", "thank", "please", "pls", "continue", "go", "going", "keep", "tell", "explain", "say", "give", "number", "step", "steps", "details", "detail", "simpler", "simply", "again",
                                "hello", "hi", "hey", "morning", "evening", "cheers", "bye", "goodbye", "hmm", "ah", "oh",
                                "wow", "cool", "great", "nice", "alright", "got", "understand", "understood", "reply",
                                "answer", "mean", "meant", "just", "bit", "little", "lot", "quick", "quickly"])
#: A message longer than this many words is also read in sentence windows of at most WINDOW_WORDS words (the
#: classifier reads 64 tokens, about 45 words); at most MAX_WINDOWS windows, the last ones. One (the end of the
#: message) was chosen on training prompts behind a 150-word benign preamble: every window blocked 83% of benign
#: ones (small talk read alone), the last one 38% (none: 33%), and it kept 60/60 risk prompts (none: 48/60).
WINDOW_MIN_WORDS = 45
WINDOW_WORDS = 40
MAX_WINDOWS = 1
#: Openings that say the user is changing the subject ("forget that. how do I treat a sunburn?").
TOPIC_CHANGE = re.compile(
    r"^\W*(?:(?:ok(?:ay)?|fine|alright)\W+)?(?:forget (?:that|it|this|about (?:that|it))|never\s?mind|nvm|"
    r"scratch that|different (?:question|topic)|another (?:question|topic)|new (?:question|topic)|"
    r"unrelated(?: question)?|separate question|on (?:another|a different) note|chang(?:e|ing) (?:of )?"
    r"(?:the )?(?:subject|topic)|moving on)\b\W*", re.IGNORECASE)
#: How much of the earlier turns is read with a follow-up (the classifier reads 64 tokens).
CONTEXT_WORDS = 40


def content_words(text: str) -> list[str]:
    """The words of ``text`` that say what it is about: not English stop words, not conversation steering."""
    # the guard extra's (lazy: a guard configured without the classifier runs without scikit-learn)
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return [w for w in re.findall(r"[^\W\d_]+", text.casefold())
            if w not in ENGLISH_STOP_WORDS and w not in CONVERSATION_WORDS]


def sentence_windows(text: str) -> list[str]:
    """Windows of consecutive sentences of at most WINDOW_WORDS words each (the last one ends the message),
    for a message longer than WINDOW_MIN_WORDS; empty for a shorter one.

    The classifier reads the first 64 tokens: a long benign preamble would otherwise hide the request at the end.
    """
    if len(text.split()) <= WINDOW_MIN_WORDS:
        return []
    sentences = [s.strip() for s in re.split(r"(?<=[.?!;])\s+|\n+", text) if s.strip()]
    windows: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        if current and len(" ".join([*current, sentence]).split()) > WINDOW_WORDS:
            windows.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        windows.append(" ".join(current))
    tail = " ".join(text.split()[-WINDOW_WORDS:])
    if tail not in windows:
        windows.append(tail)
    return windows[-MAX_WINDOWS:]


def continues(text: str) -> bool:
    """True when a short message reads as a continuation: at most one content word, or it opens with a
    continuation word ("and", "what about ...") or refers back to something said ("it", "them", "that"); False
    when it opens by changing the subject ("forget that. how do I treat a sunburn?")."""
    if (change := TOPIC_CHANGE.match(text)) is not None:
        rest = text[change.end():]
        return bool(set(re.findall(r"[^\W\d_]+(?:'[a-z]+)?", rest.casefold())) & BACK_REFERENCES) and continues(rest)
    if len(content_words(text)) <= 1:
        return True
    words = re.findall(r"[^\W\d_]+(?:'[a-z]+)?", text.casefold())
    opens = words[:1] == ["what"] and words[1:2] == ["about"] or words[:1] == ["how"] and words[1:2] == ["about"] \
        or bool(words) and words[0] in CONTINUATION_OPENERS - {"what", "how"}
    return opens or any(w in BACK_REFERENCES for w in words)


#: After a turn that was not answered, a short question with at least this many content words and no
#: continuation cue asks something new ("How much ibuprofen can I take for back pain?"); a shorter one continues
#: the refused turn ("what if I weigh 60kg?"). Chosen on conversations_val2 (see docs/guard.md).
STANDALONE_CONTENT_WORDS = 2
_QUESTION_OPENERS = frozenset(["what", "how", "why", "when", "where", "which", "who", "whom", "is", "are", "can",
                               "could", "should", "does", "do", "did", "will", "would", "may", "was", "were"])


def follows_on(text: str) -> bool:
    """After a user turn that was not answered (refused, deferred, referred): True when ``text`` continues it
    ("it's for a story", "asking for a pub quiz, just ballpark", "finish the sentence"), False when it changes the
    subject or asks a new, self-contained question. A continuing turn keeps the earlier turn's decision."""
    if len(text.split()) > FOLLOW_UP_CONTEXT_WORDS:
        return False
    if continues(text):
        return True
    if TOPIC_CHANGE.match(text):
        return False
    words = re.findall(r"[^\W\d_]+(?:'[a-z]+)?", text.casefold())
    question = text.rstrip().endswith("?") or (bool(words) and words[0] in _QUESTION_OPENERS)
    return not (question and len(content_words(text)) >= STANDALONE_CONTENT_WORDS)
