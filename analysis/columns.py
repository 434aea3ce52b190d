"""Names the analysis modules share: the configuration columns a table or figure shows, and
the formats a table is written in. Light on purpose (no pandas): the CLI reads it too."""

from __future__ import annotations

# The configuration shown beside each trial (tables, hover text, parallel coordinates).
CONFIG_COLUMNS = ("prune.method", "prune.sparsity", "prune.schedule", "quant.method",
                  "quant.bits", "finetune.epochs", "finetune.lr", "finetune.schedule")
FORMATS = ("table", "csv", "json")  # what render() writes and --format allows
