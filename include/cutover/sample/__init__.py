"""The sample e-commerce world: schema, deterministic generator, planted defects."""
