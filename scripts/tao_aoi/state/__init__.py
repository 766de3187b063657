"""The run's durable state: the DEFT state, the three-phase runner's state, the hash-chained log they are views of, the stage table and plan, their JSON Schemas, and the run lock."""
