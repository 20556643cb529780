"""jax_sft: supervised fine-tuning of Gemma on TPUs, teaching it to show its work."""

__version__ = "0.1.0"
