"""Associative-memory studies of the Hopfield model: retrieval, capacity, convergence, no-op."""
