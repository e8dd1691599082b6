"""LightningDataModules: every dataset becomes (inputs, labels) tensors held in memory."""
