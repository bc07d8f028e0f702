"""Evaluation: free-text metrics, hallucination signals, multiple-choice benchmarks, reports (``medtune eval``)."""
