"""Scale-out: the plan on Ray (one actor per GPU or CPU worker), or split into shards."""
