"""Any QA dataset on the Hugging Face hub through ``datasets.load_dataset`` (needs the network)."""

from __future__ import annotations

from pathlib import Path

from medtune.data.records import LoadResult
from medtune.data.sources.tabular import rows_to_result
from medtune.errors import UserError


def load(dataset_id: str, columns: dict[str, str], source_label: str) -> LoadResult:
    """Load the ``train`` split of a hub dataset; a clear error when the hub cannot be reached."""
    import datasets

    try:
        dataset = datasets.load_dataset(dataset_id, split="train")
    except Exception as error:  # offline: ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError...
        raise UserError(f"hf:{dataset_id}: cannot load from the Hugging Face hub ({error.__class__.__name__}); "
                        "check the id and the network, or download it and use csv:/jsonl: with --map.") from None
    rows = ((f"hf:{dataset_id}[{i}]", dict(row)) for i, row in enumerate(dataset))
    return rows_to_result(rows, columns, source_label, Path(f"hf:{dataset_id}"))
