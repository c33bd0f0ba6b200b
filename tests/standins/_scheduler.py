"""A stand-in for qsub / sbatch (no scheduler runs here): records what it is sent, then runs the
job at once with bash, once per array element (side by side) with the scheduler's index
variable set.

Every call appends {"tool", "args", "script", "id", "after", "ran": [exit codes]} to $STANDIN_LOG;
each run's output goes to $STANDIN_LOG.<job id>.<array index>.out.
A dependency must name jobs submitted before; `afterok` jobs run only when all of those
succeeded (else "ran" is [] and the job is recorded as never started, as a scheduler would).
"""

import json
import os
import re
import subprocess
import sys


def main(tool: str) -> int:
    args = sys.argv[1:]
    script_path = args[-1]
    script = open(script_path, encoding="utf-8").read()
    log = os.environ["STANDIN_LOG"]
    calls = [json.loads(x) for x in open(log, encoding="utf-8")] if os.path.exists(log) else []
    by_id = {c["id"]: c for c in calls}
    if tool == "qsub":
        dep = next((args[i + 1] for i, a in enumerate(args) if a == "-W"), "")
        after = dep.split("afterok:", 1)[1].split(":") if "afterok:" in dep else []
        array = re.search(r"^#PBS -J (\d+)-(\d+)$", script, re.M)
        index_var = "PBS_ARRAY_INDEX"
    else:
        dep = next((a.split("=", 1)[1] for a in args if a.startswith("--dependency=")), "")
        after = dep.split("afterok:", 1)[1].split(":") if "afterok:" in dep else []
        array = re.search(r"^#SBATCH --array=(\d+)-(\d+)$", script, re.M)
        index_var = "SLURM_ARRAY_TASK_ID"
    unknown = [a for a in after if a not in by_id]
    if unknown:
        print(f"{tool}: unknown dependency job id(s) {unknown}", file=sys.stderr)
        return 1
    n = len(calls) + 1
    job_id = (f"{100 + n}[].pbs01" if array else f"{100 + n}.pbs01") if tool == "qsub" else str(100 + n)
    indices = range(int(array.group(1)), int(array.group(2)) + 1) if array else [None]
    ran = []
    if all(all(rc == 0 for rc in by_id[a]["ran"]) and by_id[a]["ran"] for a in after):
        running = []
        for i in indices:  # array elements run side by side, as on a cluster
            env = dict(os.environ)
            if i is not None:
                env[index_var] = str(i)
            out = open(f"{log}.{job_id}.{i if i is not None else 0}.out", "w")  # the job's log
            proc = subprocess.Popen(["bash", script_path], env=env, stdout=out, stderr=subprocess.STDOUT)
            running.append((proc, out))
        for proc, out in running:
            ran.append(proc.wait())
            out.close()
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "args": args, "script": script, "id": job_id, "after": after,
                            "ran": ran}) + "\n")
    print(f"{job_id};cluster1" if tool == "sbatch" and "--parsable" in args else job_id)
    return 0
