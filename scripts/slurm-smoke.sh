#!/usr/bin/env bash
# Smoke test of the Slurm scripts on a real, single-node Slurm on localhost.
#
#   scripts/slurm-smoke.sh [DATA [SHARDS]]     (default: data/trec6/train.jsonl, 4 shards)
#
# Installs Debian's slurm-wlm and munge when missing, starts munged, slurmctld and slurmd
# (one node, 2 CPUs, its own configuration and state in a temporary directory), submits
# scripts/slurm/featurize-array.sbatch as a job array of SHARDS tasks, merge.sbatch with
# --dependency=afterok on the array, and attribute.sbatch after the merge; waits for them,
# compares the merged file with a one-process `tangent featurize` (cmp), prints the timings
# and stops the daemons it started. Runs on demand, not in CI. Needs root (it installs
# packages and runs the daemons).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DATA=${1:-data/trec6/train.jsonl}
SHARDS=${2:-4}
MODEL=${MODEL:-models/trec6}
export KERNEL=${KERNEL:-pntk} PROJ_DIM=${PROJ_DIM:-1024} SEED=${SEED:-0} PROJECTOR=${PROJECTOR:-sketch}

scripts/setup.sh
need=()
for pkg in slurm-wlm munge; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
[ -x .build/release/tangent ] || swift build -c release >&2
export TANGENT=$root/.build/release/tangent

work=$(mktemp -d /tmp/tangent-slurm.XXXXXX)
mkdir -p "$work/state" "$work/spool" "$work/out"
started=()
cleanup() {
    for name in "${started[@]}"; do
        [ -f "$work/$name.pid" ] && kill "$(cat "$work/$name.pid")" 2>/dev/null || true
    done
    [ -n "${munged_pid:-}" ] && kill "$munged_pid" 2>/dev/null || true
}
trap cleanup EXIT

# munge: the key Debian's package made, or a new one; a daemon of our own on its own socket.
if [ ! -s /etc/munge/munge.key ]; then
    (command -v mungekey >/dev/null && mungekey --create --force) || \
        (dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null)
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    munged_pid=$(pgrep -u munge -n munged || true)
fi
munge -n | unmunge >/dev/null || { echo "munge does not work" >&2; exit 1; }

node=tangent0
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$work/slurm.conf" <<EOF
ClusterName=tangent-smoke
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=smoke Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
echo "# no cgroups: processes are tracked by /proc" > "$work/cgroup.conf"
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF" -i; started+=(slurmctld)
slurmd -f "$SLURM_CONF" -N "$node"; started+=(slurmd)
for _ in $(seq 60); do
    sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle' && break
    sleep 1
done
sinfo -h -o '%T' | grep -qE '^idle' || { echo "the node did not come up:" >&2; tail -20 "$work/slurmd.log" "$work/slurmctld.log" >&2; exit 1; }
echo "slurm up: $(sinfo -h -o '%P %D %c %T')"

export MODEL DATA OUT=$work/out/train.safetensors QUERIES=${QUERIES:-data/trec6/test.jsonl}
export RESULT=$work/out/attributions.jsonl TOP=${TOP:-5} THREADS=1
t0=$(date +%s%N)
array=$(sbatch --parsable --chdir="$root" --cpus-per-task=1 --output="$work/featurize-%A_%a.log" \
        --array=0-$((SHARDS - 1)) scripts/slurm/featurize-array.sbatch)
merge=$(sbatch --parsable --chdir="$root" --dependency=afterok:"$array" --output="$work/merge-%j.log" scripts/slurm/merge.sbatch)
attr=$(sbatch --parsable --chdir="$root" --dependency=afterok:"$merge" --cpus-per-task=2 --output="$work/attribute-%j.log" \
       --export=ALL,THREADS=2 scripts/slurm/attribute.sbatch)
echo "submitted: array $array (${SHARDS} tasks), merge $merge (afterok:$array), attribute $attr (afterok:$merge)"
while squeue -h -j "$array,$merge,$attr" 2>/dev/null | grep -q .; do sleep 2; done
t1=$(date +%s%N)
echo "all jobs left the queue after $(( (t1 - t0) / 1000000 )) ms"
for f in "$work"/featurize-*.log "$work"/merge-*.log "$work"/attribute-*.log; do
    echo "--- $(basename "$f")"
    tr '\r' '\n' < "$f" | grep -vE '^\s*$|[0-9]+% [0-9]+/' | tail -6 || true
done
# Without accounting, the controller remembers finished jobs for MinJobAge (300 s).
for j in "$array" "$merge" "$attr"; do
    scontrol show job "$j" 2>/dev/null | grep -oE '^JobId=[0-9]+ ArrayJobId=[0-9]+ ArrayTaskId=[0-9]+|^JobId=[0-9]+ JobName=[^ ]+|JobState=[A-Z]+|RunTime=[0-9:]+|ExitCode=[0-9:]+' \
        | paste -sd ' ' | sed 's/ JobId=/\nJobId=/g' || true
done
[ -f "$OUT" ] || { echo "FAIL: the merge wrote no $OUT" >&2; exit 1; }

echo "one-process run for comparison:"
t2=$(date +%s%N)
"$TANGENT" featurize --model "$MODEL" --data "$DATA" --kernel "$KERNEL" --proj-dim "$PROJ_DIM" --seed "$SEED" \
    --projector "$PROJECTOR" --threads 2 --out "$work/one.safetensors" 2>/dev/null
t3=$(date +%s%N)
echo "one process, 2 threads: $(( (t3 - t2) / 1000000 )) ms"
if cmp "$OUT" "$work/one.safetensors"; then
    echo "PASS: merged shards are byte-identical to one run ($(stat -c %s "$OUT") bytes)"
else
    echo "FAIL: merged shards differ from one run" >&2; exit 1
fi
if [ -s "$RESULT" ]; then
    echo "attribution: $(wc -l < "$RESULT") texts explained; the first: $(head -c 300 "$RESULT")..."
else
    echo "FAIL: the attribute job wrote nothing" >&2; exit 1
fi
