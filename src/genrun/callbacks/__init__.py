"""Lightning callbacks genrun adds to every training run."""
