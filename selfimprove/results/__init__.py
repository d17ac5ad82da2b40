"""What a run leaves for people: the summary and plots, compare, load, metrics.jsonl, wandb."""
