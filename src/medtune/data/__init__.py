"""Medical QA data pipeline (``medtune prepare``, ``medtune data stats``).

Raw sources (a registry of small loaders in :mod:`medtune.data.sources`) -> cleaning -> sampling ->
leakage-safe split -> prompt/completion formatting -> a prepared folder (see docs/ARCHITECTURE.md).
Entry points: :func:`medtune.data.pipeline.prepare` and :func:`medtune.data.prepared.load_prepared`.
"""
