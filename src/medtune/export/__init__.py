"""Merge, convert to GGUF, quantize, verify, and write Ollama Modelfiles (``medtune export``)."""
