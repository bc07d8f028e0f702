"""``hf:<dataset id>`` loader through :func:`datasets.load_dataset` (all splits concatenated).

The Hugging Face hub is often unreachable (always, on this project's CI): that is a :class:`UserError` telling
the user to download the data and use ``csv:``/``jsonl:`` instead. A local dataset folder also works.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from medtune.data.sources.base import LoadedSource
from medtune.data.sources.tabular import check_mapping, rows_from_records
from medtune.errors import UserError


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub host (``HF_ENDPOINT``) accepts a TCP connection and offline mode is off."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub(dataset_id: str, columns: dict[str, str] | None = None) -> LoadedSource:
    """Load every split of a hub (or local) dataset and map its columns."""
    import datasets

    mapping = check_mapping(columns or {}, f"hf:{dataset_id}")
    if not Path(dataset_id).expanduser().exists() and not hub_reachable():
        raise UserError(f"hf:{dataset_id}: the Hugging Face hub is not reachable from this machine; download the "
                        "data elsewhere and use csv:PATH or jsonl:PATH with --map question=...,answer=....")
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
