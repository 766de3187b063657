"""Every default the toolkit uses, in one place (the anchor had min_similarity 0.9 in its docs and
None in its code). Scripts, state init, pre-flight and the report all read these."""

NUM_SDG = 20                 # synthetic rows ingested per iteration
TOP_K_PER_LABEL = 50         # RCA: weakest samples kept per raw label
TOP_K_PER_TARGET = 5         # mining: neighbours per weak target
MIN_SIMILARITY = 0.9         # mining: cosine floor
MIN_RECALL = 1.0             # RCA: recall the operating threshold must keep
RECALL_TARGET_PCT = 100.0    # KPI: default operating point
SDG_LABELS = ("PASS", "EXCESS_SOLDER", "MISSING", "BRIDGE")  # labels AnomalyGen can synthesise
BACKENDS = ("local", "docker", "slurm")
CHECKPOINT_NAME = "best.ckpt"  # every backend's train leaves its deliverable checkpoint here
