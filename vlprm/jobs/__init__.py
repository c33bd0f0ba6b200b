"""Running a pipeline on a whole node or a cluster: `pipelines` (one shard's command and the
merge's, per pipeline), `workers` (one local process per GPU group, then the merge), `cluster`
(the one PBS / SLURM job writer: array jobs, dependencies) and `sweep` (training sweeps on it)."""
