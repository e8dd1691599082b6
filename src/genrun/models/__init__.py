"""One LightningModule per model family: the objective, the optimisers, what is logged."""
