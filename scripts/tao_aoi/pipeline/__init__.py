"""The three-phase job: pre-flight, compute budget, the DEFT loop, the phase handoffs and the deliverable."""
