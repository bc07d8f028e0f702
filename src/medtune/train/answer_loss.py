"""The training loss with the output head only at answer positions, for devices where TRL's fused head scores all.

TRL's ``SFTTrainer`` computes its loss through a fused, chunked output head that also returns per-token entropy and
top-1 accuracy for its logs. On CUDA (Triton) that head projects only the positions whose label is kept; elsewhere,
the CPU included, it projects every position, prompt tokens too, and computes the extra fields. With answer-only loss
most tokens are prompt (system prompt and question), and on a small model the head is a large share of the work
(SmolLM2-135M: 28M of its 134M weights). :class:`AnswerHeadSFTTrainer` runs the head only at the answer positions
(transformers' ``logits_to_keep`` given as indices) and computes the same loss TRL does: summed answer-token negative
log-likelihood divided by the answer tokens of the step (``num_items_in_batch``). It leaves out the entropy and
accuracy metrics, which medtune's runs do not report.

Which head a run uses is the device policy's choice (:func:`loss_head`): TRL's fused head on CUDA, where its chunks
keep a 128k-vocabulary model's logits out of memory; this one elsewhere. The run records it (run.json ``loss_head``).
"""

from __future__ import annotations

from typing import Any

from trl import SFTTrainer

IGNORE_INDEX = -100


def loss_head(cuda: bool) -> str:
    """``trl-fused`` on CUDA (TRL's chunked head, answer positions only there), else ``answer-positions``."""
    return "trl-fused" if cuda else "answer-positions"


def answer_positions(labels: Any) -> Any:
    """Indices of the positions whose next token is a kept label (the columns any row of the batch needs)."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().flatten()


class AnswerHeadSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss runs the output head only at answer positions (module docstring)."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Summed answer-token NLL over the step's answer tokens, as TRL's loss; no entropy/accuracy metrics."""
        import torch

        labels = inputs["labels"]
        keep = answer_positions(labels)
        if not keep.numel():  # no answer token in the batch: a zero loss that still reaches the graph
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**model_inputs, use_cache=False, logits_to_keep=keep)
        targets = labels[:, keep + 1]
        logits = outputs.logits.float()
        total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                  ignore_index=IGNORE_INDEX, reduction="sum")
        count = (targets != IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
        loss = total / torch.as_tensor(count).clamp(min=1)
        # like TRL (and Trainer): num_items_in_batch counts every rank's tokens, and DDP averages the gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss
