"""PRM training: data loading and batching (`data`), the step-label trainer (`trainer`), run
arguments (`config`), LoRA (`lora`), the training run (`run`), its command line (`main`); sweeps on
PBS / SLURM live in `vlprm.jobs.sweep`. Nothing heavy is imported here."""
