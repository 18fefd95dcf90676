"""How the miniature world's weights were made (`make world`): training recipes for the
text-to-image model and the judges, the erasure runs, the build that writes the cards. Not needed
at eval time and left out of the wheel; `spqr_fast.world` keeps what `eval` and `init` use."""
