#!/usr/bin/env bash
# Run recipes to their end, one after another, for docs/results.md: each `zoo fit` is followed by
# `zoo test` on its best checkpoint, then the finished runs are exported to docs/results/.
#
#   nohup benchmarks/run_queue.sh sunspots adding copy sst2 ptb-lstm ptb-gru > runs/results/queue.log 2>&1 &
#
# A run is NAME or NAME@CELL (`adding@lstm` swaps the recipe's cell). Re-running the same command skips
# finished runs and continues an interrupted one from its last checkpoint, in the same MLflow run.
# Environment: RESULTS_DIR (default runs/results: the MLflow store mlflow.db, checkpoints ckpt/NAME,
# logs logs/NAME.log, markers done/NAME; git-ignored), PYTHON (default python), EXPORT_TO (default
# docs/results; empty: no export), EXTRA_ARGS (more `zoo` arguments for every run, split on spaces,
# e.g. '--trainer.max_epochs 1' for a smoke test). Run it from the repository root, with the corpora in ../shared/data.
set -uo pipefail

# as given (relative paths keep the recorded commands free of this machine's folders)
RESULTS_DIR=${RESULTS_DIR:-runs/results}
PYTHON=${PYTHON:-python}
EXPORT_TO=${EXPORT_TO-docs/results}
export MLFLOW_TRACKING_URI="sqlite:///$(realpath -m "$RESULTS_DIR")/mlflow.db"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
mkdir -p "$RESULTS_DIR"/{logs,ckpt,done}

PTB_FILES='{train: ../shared/data/ptb/ptb.train.txt, validation: ../shared/data/ptb/ptb.valid.txt, test: ../shared/data/ptb/ptb.test.txt}'
SST2_FILES='{train: ../shared/data/sst2/train.tsv, validation: ../shared/data/sst2/dev.tsv, test: ../shared/data/sst2/test.tsv}'
EWT_FILES='{train: ../shared/data/ud_english_ewt/en_ewt-ud-train.conllu, validation: ../shared/data/ud_english_ewt/en_ewt-ud-dev.conllu, test: ../shared/data/ud_english_ewt/en_ewt-ud-test.conllu}'

# recipe_args NAME: the recipe and the offline data overrides of docs/recipes.md, one argument a line
recipe_args() {
    case "$1" in
        sunspots) printf '%s\n' -c recipes/forecast/sunspots-gru.yaml ;;
        adding) printf '%s\n' -c recipes/memory/adding.yaml ;;
        copy) printf '%s\n' -c recipes/memory/copy.yaml ;;
        cuisine) printf '%s\n' -c recipes/memory/cuisine.yaml ;;
        sst2) printf '%s\n' -c recipes/classify/sst2-gru.yaml --data.path csv \
            --data.load_kwargs '{delimiter: "\t"}' --data.data_files "$SST2_FILES" ;;
        ptb-lstm | ptb-gru | ptb-char) printf '%s\n' -c "recipes/lm/$1.yaml" --data.path text \
            --data.text_column text --data.data_files "$PTB_FILES" ;;
        ewt-lstm | ewt-gru | ewt-gru-char) printf '%s\n' -c "recipes/tag/$1.yaml" --data.path conllu --data.name null \
            --data.tags_column upos --data.data_files "$EWT_FILES" ;;
        *) echo "run_queue.sh: unknown run '$1' (known: sunspots adding copy cuisine sst2 ptb-lstm ptb-gru ptb-char ewt-lstm ewt-gru ewt-gru-char, each optionally @CELL)" >&2
           return 2 ;;
    esac
}

run_one() {
    local key=$1 name=${1%@*} cell="" args=() extra=()
    [[ $key == *@* ]] && cell=${key#*@}
    mapfile -t args < <(recipe_args "$name") || return 2
    [[ ${#args[@]} -gt 0 ]] || return 2
    [[ -n $cell ]] && args+=(--model.encoder.cell "$cell")
    # shellcheck disable=SC2206  # split on purpose
    [[ -n ${EXTRA_ARGS:-} ]] && args+=($EXTRA_ARGS)
    local ckpt="$RESULTS_DIR/ckpt/$key" log="$RESULTS_DIR/logs/$key.log" done_file="$RESULTS_DIR/done/$key"
    if [[ -f $done_file ]]; then
        echo "$(date -u +%FT%TZ) $key: finished before, skipped"
        return 0
    fi
    args+=(--trainer.enable_progress_bar false --checkpoint.dirpath "$ckpt")
    if [[ -f $ckpt/last.ckpt && -f $ckpt/mlflow_run.json ]]; then
        # continue the interrupted fit in its own MLflow run
        local run_id
        run_id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$ckpt/mlflow_run.json")
        extra=(--ckpt_path "$ckpt/last.ckpt" --trainer.logger zoo.tracking.ZooMLFlowLogger
               --trainer.logger.run_id "$run_id" --trainer.logger.tracking_uri "$MLFLOW_TRACKING_URI")
        echo "$(date -u +%FT%TZ) $key: resuming run $run_id from $ckpt/last.ckpt"
    fi
    echo "$(date -u +%FT%TZ) $key: fit (log: $log)"
    local start=$SECONDS
    {
        echo "# $(date -u +%FT%TZ) zoo fit ${args[*]} ${extra[*]}"
        "$PYTHON" -m zoo fit "${args[@]}" "${extra[@]}"
    } >> "$log" 2>&1
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "$(date -u +%FT%TZ) $key: fit failed (exit $rc, see $log)"
        return $rc
    fi
    echo "$(date -u +%FT%TZ) $key: fit done in $((SECONDS - start)) s; test on the best checkpoint"
    {
        echo "# $(date -u +%FT%TZ) zoo test ${args[*]} --ckpt_path best"
        "$PYTHON" -m zoo test "${args[@]}" --ckpt_path best
    } >> "$log" 2>&1
    rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "$(date -u +%FT%TZ) $key: test failed (exit $rc, see $log)"
        return $rc
    fi
    cp "$ckpt/mlflow_run.json" "$done_file"
    echo "$(date -u +%FT%TZ) $key: done"
}

failed=0
for key in "$@"; do
    run_one "$key" || failed=1
done
if [[ -n $EXPORT_TO && -f benchmarks/results.py ]]; then
    "$PYTHON" benchmarks/results.py export --tracking-uri "$MLFLOW_TRACKING_URI" --out "$EXPORT_TO" &&
        "$PYTHON" benchmarks/results.py render --results "$EXPORT_TO"
fi
exit $failed
