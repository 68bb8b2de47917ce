"""Pure JAX math of both papers, no Flax: normalizers, attention, the Hopfield model, entmax.

Shape letters used in names across the package (nanodo's convention): B batch, T query
positions, S key / stored positions, L sequence length (queries = keys), H heads, D model
width (or pattern size d), Dh head width, M memories (stored patterns), V vocabulary,
P prompt length, G segments (STanHop), E embedding width (STanHop). ``q_BTHD`` is a query
array [B, T, H, D].
"""
