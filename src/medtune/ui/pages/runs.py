"""The Runs page: every run folder with its recipe, loss curves, summary, figures and evaluation; compare runs."""

from __future__ import annotations

import streamlit as st

from medtune.errors import UserError
from medtune.paths import runs_dir
from medtune.runs import RunDir, list_runs
from medtune.ui import runs_view


def _run_details(run: RunDir) -> None:
    """Everything one run folder says about itself."""
    info = run.info()
    st.caption(f"{info.get('base_model', '?')} · recipe {info.get('recipe', '?')} · {info.get('status', '?')}"
               f" · created {info.get('created', '?')}")
    summary = runs_view.read_json(run.summary)
    cols = st.columns(4)
    for col, (label, key, fmt) in zip(cols, [("final loss", "final_loss", "{:.4f}"),
                                             ("val loss", "final_val_loss", "{:.4f}"),
                                             ("steps", "steps", "{}"), ("time", "seconds", "{:.0f} s")],
                                      strict=True):
        value = summary.get(key)
        col.metric(label, fmt.format(value) if isinstance(value, int | float) else "-")
    losses = runs_view.loss_frame(run)
    if losses.empty:
        st.info("No metrics.jsonl yet: the run has not logged a step.")
    else:
        st.markdown("**Loss curves**")
        st.line_chart(losses, x_label="step", y_label="loss")
    tabs = st.tabs(["Recipe", "Summary", "Figures", "Evaluation", "Training data"])
    with tabs[0]:
        text = runs_view.recipe_text(run)
        st.code(text, language="yaml") if text else st.caption("No recipe.yaml in this run folder.")
    with tabs[1]:
        st.json(summary) if summary else st.caption("No summary.json (the run may still be training).")
    with tabs[2]:
        pictures = runs_view.figures(run)
        for picture in pictures:
            st.image(str(picture), caption=picture.name)
        if not pictures:
            st.caption("No figures in this run folder.")
    with tabs[3]:
        results = runs_view.eval_results(run)
        if results:
            st.dataframe(runs_view.eval_frame(results))
            st.caption(f"evaluated {results.get('created', '?')}, limit {results.get('limit')}, "
                       f"shots {results.get('shots')}")
        else:
            st.caption(f"Not evaluated yet: `medtune eval {run.root.name}` writes eval/results.json.")
    with tabs[4]:
        manifest = runs_view.read_json(run.data_manifest)
        st.json(manifest) if manifest else st.caption("No data_manifest.json in this run folder.")


def render() -> None:
    """The Runs page."""
    st.title("Training runs")
    runs = list_runs()
    if not runs:
        st.info(f"No run folders in {runs_dir()}. Train one with `medtune train RECIPE`.")
        return
    names = [run.root.name for run in runs]
    by_name = dict(zip(names, runs, strict=True))
    chosen = st.multiselect("Runs to show (pick several to compare)", names, default=names[:1], key="runs_pick")
    if not chosen:
        st.caption("Pick at least one run.")
        return
    selected = [by_name[name] for name in chosen]
    if len(selected) > 1:
        st.subheader("Comparison")
        try:
            st.dataframe(runs_view.compare_frame(selected), width="stretch")
        except UserError as error:
            st.error(str(error), icon=":material/error:")
        column = st.radio("Curve", ["train loss", "validation loss"], horizontal=True, key="compare_curve")
        curves = runs_view.compare_loss_frame(selected, column)
        if curves.empty:
            st.caption(f"No {column} logged in these runs.")
        else:
            st.line_chart(curves, x_label="step", y_label=column)
    for run in selected:
        with st.expander(run.root.name, expanded=len(selected) == 1):
            try:
                _run_details(run)
            except (UserError, ValueError) as error:  # a half-written or hand-edited file
                st.error(f"{run.root.name}: {error}", icon=":material/error:")


render()
