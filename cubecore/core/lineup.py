"""The models ``evaluate`` compares and the metrics it headlines: names only (no torch), so
params validation (``evaluate.require``) can check against the same lists."""

HEADLINE = ("cosine", "mrr", "recall@1", "bleu", "rouge_l")
INTERVALS = ("cosine", "mrr", "recall@1")  # per-row metrics, so they have bootstrap intervals
BASELINES = ("identity", "mean", "ridge", "linear", "mlp", "blend", "shift")
MODELS = ("cube", *BASELINES)
HIGHER_IS_BETTER = {"val_loss": False, "val_cosine": True, "val_mrr": True}  # the monitored val figures
