#!/usr/bin/env bash
# Re-make the shipped models in models/ (the commands models/README.md lists), then
# refresh the table in models/README.md from each model's metadata.json.
#   tools/make_models.sh            # all of them (~50 minutes on a loaded 2-core machine)
#   tools/make_models.sh single_point/nk_tanh ...
# Training runs at nice 10 on one thread (the train params' `threads`): the machine is shared.
# UVS_MODEL_PROTOCOL picks the babbling (default paper: the reference code's, which
# models/README.md explains is the better one; design: DESIGN.md's narrow babbling).
set -eo pipefail
cd "$(dirname "$0")/.."
. ./activate   # before `set -u`: colcon's setup scripts read unset variables
set -u

data=${UVS_MODEL_DATA:-build/model_data}
protocol=${UVS_MODEL_PROTOCOL:-paper}
mkdir -p "$data"

# task samples seed epochs: the paper's protocol (DESIGN.md): 100k single-point,
# 200k multi-point, 10k visual servoing; 30 / 40 epochs.
declare -A SAMPLES=([single_point]=100000 [multi_point]=200000 [visual_servo]=10000
                   [pose]=100000)
declare -A EPOCHS=([single_point]=30 [multi_point]=40 [visual_servo]=30 [pose]=30)
# llknn is not shipped: its model is the babbling itself (8 MB single point, 30 MB
# multi point); the estimator node and `uvs servo` build it on first use into the
# cache (uvs_core.estimators.cache), from the same babbling as below.
MODELS=()
for task in single_point visual_servo multi_point pose; do
  for estimator in nk_tanh nj binj nk_relu; do MODELS+=("$task/$estimator"); done
done
[ "$#" -gt 0 ] && MODELS=("$@")

for model in "${MODELS[@]}"; do
  task=${model%/*}
  estimator=${model#*/}
  bag="$data/$task-${SAMPLES[$task]}-$protocol-seed0"
  [ -d "$bag" ] || uvs collect --task "$task" --samples "${SAMPLES[$task]}" --seed 0 \
    --protocol "$protocol" --out "$bag"
  echo "== $model"
  nice -n 10 uvs train --estimator "$estimator" --task "$task" --data "$bag" --out "models/$model" \
    --epochs "${EPOCHS[$task]}" --seed 0 --overwrite
done

python tools/models_table.py models > models/.table.md
python - <<'PY'
from pathlib import Path
readme = Path("models/README.md")
text = readme.read_text()
table = Path("models/.table.md").read_text()
begin, end = "<!-- models-table -->", "<!-- /models-table -->"
head, _, rest = text.partition(begin)
_, _, tail = rest.partition(end)
readme.write_text(f"{head}{begin}\n{table}{end}{tail}")
Path("models/.table.md").unlink()
PY
echo "models: done"
