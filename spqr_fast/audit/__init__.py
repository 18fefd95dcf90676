"""Time-boxed audits: `spqr-fast audit` decides PASS / FAIL / INCONCLUSIVE within a budget, with
an error rate that holds however early it stops (anytime-valid confidence sequences)."""
