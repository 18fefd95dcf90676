"""`spqr-fast compare OLD NEW`: what changed between two runs and why — provenance differences
first, then each model's changes with intervals (paired per image where the runs share prompts
and seeds), and a verdict per model by the user's rules."""

from .comparison import Comparison, compare_runs
from .rules import DEFAULT_RULES, Rule, parse_rules

__all__ = ["DEFAULT_RULES", "Comparison", "Rule", "compare_runs", "parse_rules"]
