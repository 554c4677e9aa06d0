"""Every name this project stores on an Optuna study or trial (one owner; other modules import them).

Changing a value here changes the stored schema: studies and replicas written before would no longer read.
"""

RECORD_ATTR = "seqclf"  # study: the StudyRecord it was built from
REPLICAS_ATTR = "replicas"  # study: set by ``train``, where the replicas went and their scores
COMMAND_CONFIG_ATTR = "command_config"  # study: the last `tune`/`run` command's resolved options, as a --config file
POINT_ATTR = "grid_point"  # trial: the point an enqueued trial trains, {"batch_size", "learning_rate"}
ERROR_ATTR = "error"  # trial: why it failed, one line
DUPLICATE_ATTR = "duplicate_of"  # trial: trained nothing, its point was taken (trial number or a reason)
HISTORY_ATTR = "dev_history"  # trial: [{"epoch", "f1", "accuracy", "loss"}, ...], one entry per epoch
PRUNED_AFTER_ATTR = "pruned_after_epoch"  # trial: the epoch after which a pruner stopped it
CONFIRM_SEED_ATTR = "confirm_seed"  # trial: the seed a confirmation trial trains its point with (not the grid's)
FAILED_RUN_ATTR = "failed_run"  # trial: why its model is no better than a trivial predictor, one line
INFEASIBLE_ATTR = "infeasible"  # trial (FAIL): out of memory even at micro-batch 1; its point is not retried
MICRO_BATCH_ATTR = "micro_batch_size"  # trial: the micro-batch it trained with (the batch size: no accumulation)
KEPT_WEIGHTS_ATTR = "kept_weights"  # trial: its weights kept as an Optuna artifact (``study.artifacts.KeptWeights``)
KEEP_ERROR_ATTR = "kept_weights_error"  # trial: why its weights could not be kept, one line
TRACKING_ATTR = "mlflow_run"  # study: its MLflow parent run, {"uri", "experiment_id", "run_id"} (``report``)
SELECTION_ATTR = "selection"  # study: the chosen point and its evidence, as `tune` last computed them
DEV_ACCURACY_ATTR, DEV_MICRO_F1_ATTR, DEV_LOSS_ATTR = "dev_accuracy", "dev_micro_f1", "dev_loss"
DEV_F1_ATTR, DEV_MCC_ATTR, DEV_CLASS_F1_ATTR = "dev_macro_f1", "dev_mcc", "dev_f1_per_class"
DEV_METRICS_ATTR = "dev_metrics"  # trial: every dev score of its task (``training.outputs.task_metrics``)
TRAIN_RUNTIME_ATTR, EVAL_RUNTIME_ATTR, TRAIN_LOSS_ATTR = "train_runtime", "eval_runtime", "train_loss"
