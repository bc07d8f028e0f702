"""One client library for every answer medtune gives: backends behind one interface, plus guardrails."""
