"""The DEFT loop's data stages: routing weak samples, the limiting samples' priority, synthetic (SDG) ingest, mining similar real images, and assembling each iteration's training set."""
