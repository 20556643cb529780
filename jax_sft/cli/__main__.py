"""`python -m jax_sft.cli ...` is `jax-sft ...`."""

import sys

from jax_sft.cli import main

sys.exit(main())
