"""Network modules of DeepFill v1 (generator, contextual attention, critics)."""
