"""NVIDIA TAO facts: the pinned versions, the train spec and NVIDIA's own schema checks."""
