"""Training the recipe: typed config, the phases, LR maths, optimizer groups, the Trainer set-up, the run folder,
distributed helpers and the report. Uses mcq.core; mcq.core never imports it."""
