"""Trainer callbacks: metrics.jsonl (real tokens/s), a rich progress bar, validation at every epoch end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class MetricsCallback(TrainerCallback):
    """Append one JSON object per log event to ``metrics.jsonl``: train steps get real (non-pad) tokens/s."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_time: float | None = None
        self._last_tokens = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the tokens/s clock."""
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Write the log record (train step or evaluation) as one line."""
        if not logs or not state.is_world_process_zero:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen
            elapsed = now - (self._last_time or now)
            record.update(
                type="train",
                loss=logs["loss"],
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                tokens=tokens,
                tokens_per_s=round((tokens - self._last_tokens) / elapsed, 2) if elapsed > 0 else None,
                # DPO's preference signals (rewards/margins, rewards/accuracies, logps/chosen, ...)
                **{key: value for key, value in logs.items() if key.startswith(("rewards/", "logps/"))},
            )
            self._last_time, self._last_tokens = now, tokens
        elif "eval_loss" in logs:
            record.update(type="eval", val_loss=logs["eval_loss"])
        elif "train_runtime" in logs:
            record.update(type="end", seconds=logs["train_runtime"])
        else:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class EpochEvalCallback(TrainerCallback):
    """Validate at the end of every epoch even when validation also runs every N steps (never twice a step)."""

    def __init__(self) -> None:
        self._last_eval_step = -1

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Remember the step of the latest validation."""
        self._last_eval_step = state.global_step
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Ask the trainer to evaluate now, unless it just did at this step."""
        if state.global_step != self._last_eval_step:
            control.should_evaluate = True
        return control


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps showing the latest loss."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the progress bar (main process only)."""
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from medtune.cli._console import err_console

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=err_console,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, info=""
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Advance one step."""
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Show the last train / validation loss."""
        if self.progress is None or not logs:
            return
        step = f"step {state.global_step}/{state.max_steps}"
        if "loss" in logs:
            loss = float(logs["loss"])
            self.progress.update(self.task, info=f"loss {loss:.4f}")
            rate = logs.get("learning_rate")
            margin = logs.get("rewards/margins")  # DPO: how much more the policy prefers the chosen answers
            self.progress.console.print(f"{step}  loss {loss:.4f}" + (f"  lr {float(rate):.2e}" if rate else "")
                                        + (f"  reward margin {float(margin):+.3f}" if margin is not None else ""))
        elif "eval_loss" in logs:
            self.progress.update(self.task, info=f"val loss {float(logs['eval_loss']):.4f}")
            self.progress.console.print(f"{step}  validation loss {float(logs['eval_loss']):.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the bar."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
