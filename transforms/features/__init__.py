"""Features stage: a feature-set spec (schemas.features) -> a long, scaled ML matrix with its learned parameters."""
