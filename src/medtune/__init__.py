"""medtune: fine-tune open LLMs for medical question answering, evaluate them honestly, serve them safely."""

__version__ = "0.1.0"
