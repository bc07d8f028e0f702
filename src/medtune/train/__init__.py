"""Training: memory planning, LoRA/QLoRA supervised fine-tuning (TRL + PEFT), merging and ablations."""
