"""Cut a stream of text pieces at the first stop string, holding back text that may start one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def cut_at_stop(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """Yield ``pieces`` unchanged until a stop string appears; the stop string and what follows are dropped."""
    stops = [s for s in stops if s]
    if not stops:
        yield from pieces
        return
    longest = max(len(s) for s in stops)
    buffer = ""
    for piece in pieces:
        buffer += piece
        hits = [buffer.find(s) for s in stops if s in buffer]
        if hits:
            head = buffer[: min(hits)]
            if head:
                yield head
            return
        safe = len(buffer) - (longest - 1)
        if safe > 0:
            yield buffer[:safe]
            buffer = buffer[safe:]
    if buffer:
        yield buffer
