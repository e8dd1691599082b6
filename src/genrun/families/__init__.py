"""Pipelines, one module per model family, importable without Lightning (so `genrun sample` starts fast).

A family module holds the pipeline class (genrun.pipeline.Pipeline: its components, its typed knobs, its
sampling modes and its evaluation) and the generation code it runs; the family's LightningModule in
genrun.models builds the same pipeline from its live components. A checkpoint names its pipeline class,
so nothing here is registered by hand. A family whose networks no other family uses may define them here
too (shared networks live in genrun.nets).
"""
