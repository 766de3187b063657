"""Every default the toolkit uses, in one place (the anchor had min_similarity 0.9 in its docs and
None in its code). Scripts, state init, pre-flight and the report all read these."""

NUM_SDG = 20                 # synthetic rows ingested per iteration
TOP_K_PER_LABEL = 50         # RCA: weakest samples kept per raw label
TOP_K_PER_TARGET = 5         # mining: neighbours per weak target
MIN_SIMILARITY = 0.9         # mining: cosine floor of an embedder without its own calibration (SigLIP's)
MINE_SAME_LABEL = True       # mining: search a target's neighbours among pool rows of its own label
MIN_SIMILARITY_BY_EMBEDDER = {  # mining: the floor each embedder was calibrated for (bench/embedded.py)
    "SigLIP": 0.9,
    "tao-aoi-local-change": 0.8,
}
MIN_RECALL_PCT = 100.0       # RCA: recall the operating threshold must keep (options take a percent)
MIN_RECALL = MIN_RECALL_PCT / 100  # the same as the ratio deft_state.json and metrics.json keep
RECALL_TARGET_PCT = 100.0    # KPI: default operating point
SHIP_CLEARANCE = 1e-6        # deployment: the shipped threshold keeps at least this far from every KPI score
SHIP_SMALL_MARGIN = 1e-3     # deployment: a margin below this (score units) is a warning in the report and summary
CALIBRATION_DIR = "validation"  # evaluate: <R>/<it>/inference/validation/inference.csv, the model on the validation set
FAR_CONFIDENCE = 0.95        # every FAR carries its exact binomial (Clopper-Pearson) interval at this level
LIMITING_SAMPLES = 10        # RCA: defects that pin the threshold, listed in metrics.json (limiting.py)
LIMITING_SHARE = 0.5         # routing: share of SDG rows / mining neighbours the limiting samples' families get
LIMITING_ROW_WEIGHT = 3.0    # assembly: training weight of the rows an iteration adds for limiting samples
MAX_ROW_WEIGHT = 10.0        # train.py --row-weights: the largest weight a row may carry (bounded)
FEW_PINNING = 3              # RCA/report/final line lead with the samples when at most this many hold the KPI
SDG_LABELS = ("PASS", "EXCESS_SOLDER", "MISSING", "BRIDGE")  # labels AnomalyGen can synthesise
BACKENDS = ("local", "docker", "slurm")
CHECKPOINT_NAME = "best.ckpt"  # every backend's train leaves its deliverable checkpoint here

# External-job backends (docker, slurm).
JOB_POLL_SEC = 2.0             # how often a blocking train/infer asks the scheduler
DOCKER_SHM_SIZE = "8g"         # TAO's PyTorch data loaders need a large /dev/shm (never --ipc=host)
DOCKER_GPUS = "all"            # `docker run --gpus`; None runs without GPUs
PASS_ENV = ("HF_TOKEN", "NGC_API_KEY", "WANDB_API_KEY")  # forwarded by name only, when set
TAO_EMBED_MODEL = "SigLIP"     # data-services embedder when a job's settings name none
TAO_EMBED_MODEL_PATH = "google/siglip-base-patch16-224"
TAO_EMBED_BATCH_SIZE = 64
SLURM_CPUS = 2                 # cpus-per-task of each sbatch job

# Infrastructure faults (backends/faults.py): a job ended by the machine, not by its inputs, is retried.
MAX_RETRIES = 2                # retries of one job after an infrastructure fault (3 attempts in all)
RETRY_BACKOFF_SEC = 30.0       # wait before retry k: RETRY_BACKOFF_SEC * 2**(k-1), at most RETRY_BACKOFF_MAX_SEC
RETRY_BACKOFF_MAX_SEC = 600.0
LOST_POLL_GRACE_SEC = 600.0    # the scheduler may stay unreachable this long before the job counts as lost
AUTOML_MAX_FAILED_SHARE = 0.25  # a study stops once more trials failed than this share of its budget (at least 1)

# One run per results folder (run_lock.py).
RUN_LOCK_STEP_WAIT_SEC = 60.0  # a step script waits this long for another step (a commit, a copy) to finish
RUN_LOCK_SETTLE_SEC = 2.0      # a lock held with no owner named yet (being taken) is retried this long

# AutoML.
AUTOML_TRIALS = 8              # trials per AutoML phase (make demo); real TAO runs use 5-20
AUTOML_ALGORITHMS = ("bayesian", "random", "cmaes", "hyperband", "asha")
AUTOML_ALGORITHM = "bayesian"  # TPE
SEED = 1234                    # sampler and training seed
PHASE_SETS = ("all", "automl", "deft")  # run_pipeline.py / preflight.py --phases

# Compute estimate and --time-limit (run_cost.py). Stage costs the dry run does not time, from the
# tiny and demo presets on 2 cores (they are small next to training on real data).
TIME_BUDGET_MAX_ITERATIONS = 10   # a time limit never plans more DEFT iterations than this
TIME_BUDGET_MAX_TRIALS = 20       # ... nor more AutoML trials per phase
DEFT_NATIVE_ITERATION_SEC = 0.35  # routing + sdg + assemble + the commits of one iteration
DEFT_NATIVE_SEC_PER_ROW = 2e-5    # assembly's file and leakage checks, per training row
DEFT_FINALIZE_SEC = 0.3           # handoff, finalize and the final report
REPORT_RENDER_SEC = 0.15          # the report after each evaluate
RCA_SEC = 1.0                     # gap analysis + thumbnails when not measured (--epoch-sec)
EXTERNAL_JOB_SEC = 60.0           # docker/slurm job start (container, model build) when not measured
DRY_RUN_DECODE_ROWS = 200         # KPI rows the local dry run decodes to time image decoding
DRY_RUN_MAX_EPOCHS = 30           # the local dry run's long training (a local epoch is milliseconds)

# The embedded local model (backends/local.py). It reads TAO's own keys, each in the role TAO gives
# it; a spec value wins, these fill keys a spec lacks.
LOCAL_MODEL = {
    "train.optim.lr": 2e-3,
    "train.optim.weight_decay": 1e-4,         # L2 penalty (sklearn's alpha)
    "model.classify.embed_dec": 64,           # width of the classifier head's hidden layer (TAO: same role)
    "train.num_epochs": 30,
    "dataset.classify.batch_size": 64,
    "train.classify.cls_weight": [1.0, 3.0],  # TAO's cross-entropy class weights [PASS, defect]
    "train.seed": SEED,
}
DEMO_BATCH_SIZES = (64, 32, 16, 8)  # the demo spec takes the first that every set of its preset can fill
# The local model's boosted trees (local_model.py); not spec keys: TAO's schema has no tree settings.
LOCAL_TREES = {
    "per_epoch": 5,       # boosting rounds per epoch (30 epochs: 150 trees)
    "depth": 4,
    "min_leaf": 10,
    "l2": 1.0,            # leaf-value regularisation
    "shrinkage": 0.1,     # at the default learning rate and above; scales down with train.optim.lr
}
