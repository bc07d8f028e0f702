"""``medtune index build|query|list``: the retrieval index behind grounded answers with citations."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medtune.cli._console import console

index_app = typer.Typer(help="Build and query retrieval indexes (BM25 + dense, Qdrant) for cited answers.",
                        no_args_is_help=True)


@index_app.command("build")
def build(
    sources: list[str] = typer.Argument(..., help="medquad:PATH (MedQuAD_xml.tar.gz, under the data dir) "
                                                  "or a folder written by `medtune prepare`."),
    name: str = typer.Option("medquad", "--name", help="Index name (folder under MEDTUNE_HOME/indexes)."),
    qdrant_url: str | None = typer.Option(None, "--qdrant-url", help="Qdrant server URL; default: local mode."),
    exclude_prepared_test: Path | None = typer.Option(
        None, "--exclude-prepared-test", help="Prepared folder whose test-split answers are left out (honest recall)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the sources are unchanged."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Chunks embedded and upserted per batch."),
) -> None:
    """Chunk the sources' answers and index them (BM25 + MiniLM vectors); resumable, a no-op when unchanged."""
    from medtune.rag.builder import build_index

    manifest = build_index(sources, name, qdrant_url=qdrant_url, exclude_prepared_test=exclude_prepared_test,
                           force=force, batch_size=batch_size)
    if manifest["skipped"]:
        console.print(f"index [bold]{name}[/] is up to date ({manifest['chunks']} chunks); nothing to do "
                      "(--force rebuilds).")
        return
    console.print(f"index [bold]{name}[/]: {manifest['pairs']} QA pairs from {manifest['documents']} documents "
                  f"-> {manifest['chunks']} chunks ({manifest['embedded_this_run']} embedded now, "
                  f"{manifest.get('vectors_from_cache', 0)} from the embedding cache), "
                  f"dropped {manifest['dropped']}, {manifest['build_seconds']:.0f} s")


@index_app.command("query")
def query(
    name: str = typer.Argument(..., help="Index name."),
    question: str = typer.Argument(..., help="The question."),
    k: int = typer.Option(5, "-k", min=1, help="Passages to return."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid | bm25 | dense."),
    qdrant_url: str | None = typer.Option(None, "--qdrant-url", help="Qdrant server URL (when built with one)."),
    as_json: bool = typer.Option(False, "--json", help="Print passages as JSON lines."),
) -> None:
    """Show the passages a question retrieves, with their relevance score and the citation list."""
    from medtune.rag import open_retriever
    from medtune.rag.grounding import format_citations

    passages = open_retriever(name, qdrant_url=qdrant_url, mode=mode).retrieve(question, k)
    if as_json:
        for passage in passages:
            console.print_json(json.dumps(passage.to_dict()))
        return
    for number, passage in enumerate(passages, 1):
        console.print(f"[bold][{number}][/] {passage.title}  [dim](score {passage.score:.2f}, "
                      f"{passage.source}, {passage.document_id})[/]")
        console.print(f"    {passage.text[:300]}{'…' if len(passage.text) > 300 else ''}", highlight=False)
    console.print(format_citations(passages), highlight=False)


@index_app.command("calibrate")
def calibrate(
    name: str = typer.Argument(..., help="Index name."),
    prepared: Path = typer.Argument(..., help="Folder written by `medtune prepare` (MedQuAD rows with original_id)."),
    split: str = typer.Option("validation", "--split", help="Split to calibrate on (never test)."),
    k: int = typer.Option(4, "-k", min=1, help="Passages retrieved per question (as served)."),
    as_json: bool = typer.Option(False, "--json", help="Print the calibration as one JSON line."),
) -> None:
    """Choose --rag-min-score on a validation split: best-passage cosine with each question's own document shown
    vs hidden; the threshold with the best balanced accuracy."""
    from rich.table import Table

    from medtune.rag.calibrate import calibrate_min_score

    result = calibrate_min_score(name, prepared, split, k, progress=not as_json)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    table = Table(title=f"index {name}: sources-only threshold on {split} ({result.questions} questions, "
                        f"AUC {result.auc:.3f}, own document in top {k}: {result.own_document_retrieved:.2f})")
    for column in ("min score", "covered: answered", "own document hidden: 'not covered'", "balanced accuracy"):
        table.add_column(column)
    for row in result.table:
        if abs(row["threshold"] - result.threshold) <= 0.1 + 1e-9 and round(row["threshold"] * 100) % 5 == 0 \
                or row["threshold"] == result.threshold:
            style = "bold" if row["threshold"] == result.threshold else None
            table.add_row(f"{row['threshold']:.2f}", f"{row['covered_kept']:.2f}", f"{row['hidden_abstained']:.2f}",
                          f"{row['balanced_accuracy']:.3f}", style=style)
    console.print(table)
    console.print(f"chosen: --rag-min-score {result.threshold:.2f} (e.g. `medtune eval RUN --rag {name} "
                  f"--rag-min-score {result.threshold:.2f}`)")


@index_app.command("list")
def list_() -> None:
    """List built indexes with their sources and sizes."""
    from rich.table import Table

    from medtune.rag.builder import indexes_dir, list_indexes

    found = list_indexes()
    if not found:
        console.print(f"no indexes in {indexes_dir()}; build one with "
                      "`medtune index build medquad:medquad/MedQuAD_xml.tar.gz`.")
        return
    table = Table(title=f"Indexes in {indexes_dir()}")
    for column in ("name", "sources", "pairs", "chunks", "vectors", "built"):
        table.add_column(column, overflow="fold")
    for item in found:
        if not item["complete"]:
            table.add_row(item["name"], "(incomplete build: run index build again to resume)", "-", "-", "-", "-")
            continue
        table.add_row(item["name"], ", ".join(s["spec"] for s in item["sources"]), str(item["pairs"]),
                      str(item["chunks"]), str(item["vectors"]), item["created"])
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``index`` command group."""
    app.add_typer(index_app, name="index")
