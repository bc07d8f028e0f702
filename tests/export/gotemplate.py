"""A tiny renderer for the subset of Go's text/template that medtune's Ollama TEMPLATEs use.

Supported: text, ``{{- x -}}`` whitespace trimming, ``.Field``, ``$.Field``, ``$var``, ``"literal"``,
``range .Messages``, ``if`` / ``else if`` / ``else`` / ``end``, ``eq a b``, ``$v := x`` and ``$v = x``.
"""

from __future__ import annotations

import re
from typing import Any

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def _tokens(template: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s), applying trim markers."""
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", template[pos:]))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int]:
    """Parse nodes until an action starting with one of ``stop``; return (nodes, index of that action)."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        if value.startswith(stop) and stop:
            return nodes, i
        if value.startswith("range "):
            body, i = _parse(tokens, i + 1, ("end",))
            nodes.append(("range", value[6:].strip(), body))
            i += 1
        elif value.startswith("if "):
            branches: list[tuple[str | None, list[Any]]] = []
            cond: str | None = value[3:].strip()
            i += 1
            while True:
                body, i = _parse(tokens, i, ("else", "end"))
                branches.append((cond, body))
                action = tokens[i][1]
                i += 1
                if action == "end":
                    break
                cond = action[len("else if "):].strip() if action.startswith("else if ") else None
            nodes.append(("if", branches))
        else:
            nodes.append(("expr", value))
            i += 1
    return nodes, i


def _value(expr: str, dot: Any, root: dict[str, Any], env: dict[str, Any]) -> Any:
    """Evaluate a value or an ``eq`` call."""
    expr = expr.strip()
    if expr.startswith("eq "):
        a, b = re.findall(r'"[^"]*"|\S+', expr[3:])
        return _value(a, dot, root, env) == _value(b, dot, root, env)
    if expr.startswith('"'):
        return expr[1:-1].encode().decode("unicode_escape")
    if expr.startswith("$."):
        return root[expr[2:]]
    if expr.startswith("$"):
        return env[expr]
    if expr.startswith("."):
        return dot[expr[1:]]
    raise ValueError(f"unsupported expression: {expr}")


def _run(nodes: list[Any], dot: Any, root: dict[str, Any], env: dict[str, Any]) -> str:
    """Render parsed nodes."""
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "range":
            for item in _value(node[1], dot, root, env):
                out.append(_run(node[2], item, root, env))
        elif node[0] == "if":
            for cond, body in node[1]:
                if cond is None or _value(cond, dot, root, env):
                    out.append(_run(body, dot, root, env))
                    break
        else:
            assign = re.match(r"(\$\w+)\s*:?=\s*(.+)", node[1])
            if assign:
                env[assign.group(1)] = _value(assign.group(2), dot, root, env)
            else:
                out.append(str(_value(node[1], dot, root, env)))
    return "".join(out)


def render(template: str, data: dict[str, Any]) -> str:
    """Render ``template`` with ``data`` (keys like ``Messages``, ``System``)."""
    nodes, _ = _parse(_tokens(template), 0, ())
    return _run(nodes, data, data, {})
