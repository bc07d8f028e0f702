"""``hf:<dataset id>`` loader through :func:`datasets.load_dataset` (all splits concatenated).

The Hugging Face hub is often unreachable (always, on this project's CI): that is a :class:`UserError` telling
the user to download the data and use ``csv:``/``jsonl:`` instead. A local dataset folder also works.
"""

from __future__ import annotations

from medtune.data.sources.base import LoadedSource
from medtune.data.sources.tabular import check_mapping, rows_from_records
from medtune.errors import UserError


def load_hub(dataset_id: str, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load every split of a hub (or local) dataset and map its columns."""
    import datasets

    mapping = check_mapping(columns or {}, f"hf:{dataset_id}")
    try:
        loaded_splits = datasets.load_dataset(dataset_id)
    except Exception as error:  # ConnectionError, DatasetNotFoundError, OfflineModeIsEnabled, ...
        raise UserError(f"hf:{dataset_id}: cannot load it from the Hugging Face hub ({error.__class__.__name__}: "
                        f"{str(error).splitlines()[0][:150] if str(error) else 'no detail'}); download the data "
                        "and use csv:PATH or jsonl:PATH with --map.") from None
    loaded = LoadedSource(path=f"hf:{dataset_id}", format="hf")
    for split_name, split in loaded_splits.items():
        missing = [c for c in mapping.values() if c not in split.column_names]
        if missing:
            raise UserError(f"hf:{dataset_id} [{split_name}]: no column(s) {', '.join(missing)} "
                            f"(columns: {', '.join(split.column_names)}); pass --map question=COL,answer=COL.")
        loaded.rows.extend(rows_from_records(list(split), mapping, dataset_id, f"hf:{dataset_id}"))
    return loaded
