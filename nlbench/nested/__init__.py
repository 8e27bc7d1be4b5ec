"""Nested Learning's machinery: levels (parameter groups stepping at their own periods), the Continuum
Memory System head, and the optimizers torch does not ship (M3, Muon, the blog's NestedAdam)."""
