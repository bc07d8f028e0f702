"""``medtune serve``: the engine launcher (:mod:`medtune.serve.engine`: llama.cpp or vLLM as a supervised child
process) and the guarded OpenAI-compatible proxy in front of it (:mod:`medtune.serve.server`)."""
