"""Benchmark ``medtune prepare`` on all of MedQuAD + Medical Meadow + ChatDoctor + MedicationQA (MEDTUNE_DATA_DIR),
formatted with SmolLM2's own chat template (prompt_style chat-template).

Prints one JSON line: seconds (the pipeline, tokenizer already loaded), rows_per_s (input rows per second),
peak_rss_mb, input_rows, kept, splits, tokenizer_seconds.
Run: .venv/bin/python bench/prepare.py
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

from medtune.config import DataConfig, SourceSpec
from medtune.data.pipeline import prepare
from medtune.models import SMOLLM2_ALIAS, load_tokenizer

SOURCES = [
    SourceSpec(kind="medquad", path="medquad/MedQuAD_xml.tar.gz"),
    SourceSpec(kind="meadow", path="medical_meadow_wikidoc_patient_information/medical_meadow_small.json"),
    SourceSpec(kind="chatdoctor", path="chatdoctor_genmedgpt5k/chatdoctor5k.json"),
    SourceSpec(kind="medicationqa", path="medicationqa/MedInfo2019-QA-Medications.xlsx"),
]


def main() -> None:
    """Prepare everything once and print the figures as one JSON line."""
    start = time.perf_counter()
    tokenizer = load_tokenizer(SMOLLM2_ALIAS)  # converts the GGUF once per MEDTUNE_HOME
    tokenizer_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        manifest = prepare(DataConfig(sources=SOURCES, prompt_style="chat-template"), Path(out) / "prepared",
                           SMOLLM2_ALIAS, tokenizer=tokenizer, progress=False)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bench": "prepare", "seconds": round(seconds, 2),
                      "rows_per_s": round(manifest["input_rows"] / seconds, 1), "peak_rss_mb": round(peak_mb, 1),
                      "input_rows": manifest["input_rows"], "kept": manifest["kept"], "splits": manifest["splits"],
                      "rejected": manifest["rejected"], "tokenizer_seconds": round(tokenizer_seconds, 2)}))


if __name__ == "__main__":
    main()
