#!/bin/bash
# A corpus several times larger than the memory a run may use trains with bounded memory (issue 20).
#
# Builds an alpaca JSON-lines corpus of about CORPUS_GB gigabytes (bench/data_check.py's generator: 1M rows,
# repeated), and trains the tiny model on it with 2 CPU ranks, streamed (data.streaming: rows read, tokenized and
# packed while training) for 40 steps, inside a memory cgroup limited to LIMIT_GB: anonymous memory (the heap of
# the CLI, the supervisor, torchrun and both ranks) cannot exceed the limit (no swap), while the page cache of the
# corpus is reclaimed as it is read. Prints the exit code, the wall time, the cgroup's OOM kills and the peak
# anonymous memory and page cache sampled every 0.5 s.
#
#   sudo bash bench/larger_than_memory.sh                       # 8.6 GB corpus, 3 GiB limit
#   CORPUS_GB=20 LIMIT_GB=4 WORK=/data/tmp sudo -E bash bench/larger_than_memory.sh
#
# Needs root and a cgroup memory controller (v1 at /sys/fs/cgroup/memory, or v2); the corpus and the run are
# written under WORK (default /tmp/finetui-bigcorpus) and left there (rm -rf it afterwards).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
CORPUS_GB=${CORPUS_GB:-8}
LIMIT_GB=${LIMIT_GB:-3}
WORK=${WORK:-/tmp/finetui-bigcorpus}
mkdir -p "$WORK"
BASE=$WORK/base.jsonl
CORPUS=$WORK/corpus.jsonl
if [ ! -s "$BASE" ]; then  # (bench/data_check.py's alpaca rows: 0.1 % invalid, some duplicates)
  (cd "$ROOT/bench" && "$PY" -c "from pathlib import Path; import data_check; data_check.write_file(Path('$BASE'), 1_000_000)")
fi
if [ ! -s "$CORPUS" ]; then
  base_bytes=$(stat -c %s "$BASE")
  copies=$(( (CORPUS_GB * 1000000000 + base_bytes - 1) / base_bytes ))
  for _ in $(seq 1 "$copies"); do cat "$BASE"; done > "$CORPUS"
fi
cat > "$WORK/job.toml" <<EOF
name = "larger than memory: $(du -h "$CORPUS" | cut -f1) corpus, streamed, 2 CPU ranks, under a ${LIMIT_GB} GiB memory cgroup"
profile = "native"
[model]
name_or_path = "finetui:tiny-llama"
[data]
train_path = "$CORPUS"
format = "alpaca"
val_size = 0.0
streaming = true
allow_percentage_invalid_samples = 1.0
packing = true
[trainer]
stage = "sft"
training_type = "lora"
distributed_backend = "ddp"
[general]
batch_size = 8
max_steps = 40
learning_rate = 0.003
max_sequence_length = 256
[runtime]
mixed_precision = "none"
gradient_checkpointing = false
[adapter]
lora_rank = 8
lora_alpha = 16
target_modules = ["all-linear"]
[eval]
evaluation_strategy = "no"
checkpoint_strategy = "no"
logging_steps = 5
[launch]
device = "cpu"
procs_per_node = 2
EOF
limit=$((LIMIT_GB * 1024 * 1024 * 1024))
if [ -d /sys/fs/cgroup/memory ]; then  # cgroup v1
  CG=/sys/fs/cgroup/memory/finetui-bigcorpus
  mkdir -p $CG
  echo $limit > $CG/memory.limit_in_bytes
  stat_anon() { awk '$1=="total_rss"{print $2}' $CG/memory.stat; }
  stat_file() { awk '$1=="total_cache"{print $2}' $CG/memory.stat; }
  ooms() { grep oom_kill $CG/memory.oom_control | grep -v disable | awk '{print $2}'; }
else  # cgroup v2
  CG=/sys/fs/cgroup/finetui-bigcorpus
  mkdir -p $CG
  echo $limit > $CG/memory.max
  stat_anon() { awk '$1=="anon"{print $2}' $CG/memory.stat; }
  stat_file() { awk '$1=="file"{print $2}' $CG/memory.stat; }
  ooms() { awk '$1=="oom_kill"{print $2}' $CG/memory.events; }
fi
rm -rf "$WORK/run" "$WORK/mem.log"
(
  echo $BASHPID > $CG/cgroup.procs
  cd "$ROOT"
  start=$(date +%s.%N)
  set +e
  "$PY" -m tui.cli train "$WORK/job.toml" --run-dir "$WORK/run" > "$WORK/train.log" 2>&1
  echo "rc=$? seconds=$(echo "$(date +%s.%N) - $start" | bc)" > "$WORK/result"
) &
RUN=$!
while kill -0 $RUN 2>/dev/null; do echo "$(stat_anon) $(stat_file)" >> "$WORK/mem.log"; sleep 0.5; done
cat "$WORK/result"
echo "corpus $(du -h "$CORPUS" | cut -f1), $(wc -l < "$CORPUS") lines; memory limit ${LIMIT_GB} GiB; oom kills $(ooms)"
awk '{if($1>m)m=$1; if($2>c)c=$2} END{printf "peak anonymous memory %.0f MiB, peak page cache %.0f MiB\n", m/1048576, c/1048576}' "$WORK/mem.log"
