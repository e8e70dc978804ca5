#!/usr/bin/env bash
# End-to-end checks of the `malaria` binary: errors users see, interrupt and resume, model info.
set -euo pipefail
bin=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A wrong folder explains the layout and where to get the data.
if "$bin" inspect --data "$work/nowhere" >"$work/out" 2>&1; then fail "inspect accepted a missing folder"; fi
grep -q "expected layout" "$work/out" || fail "no layout help: $(cat "$work/out")"
grep -q "malaria download-data" "$work/out" || fail "no download hint"

# A small real dataset: 120 images per class.
mkdir -p "$work/data/Parasitized" "$work/data/Uninfected"
for c in Parasitized Uninfected; do
  ls "$data/$c" | awk 'NR % 80 == 1' | head -120 | while read -r f; do ln -s "$data/$c/$f" "$work/data/$c/$f"; done
done
"$bin" inspect --data "$work/data" | grep -q "Parasitized      120 images" || fail "inspect counts"

# Ctrl-C during training saves a checkpoint and exits 130; --resume finishes the run.
"$bin" --threads 2 train --data "$work/data" --out "$work/run" --epochs 3 --batch-size 8 >"$work/train.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "epoch 1/3 " "$work/train.log" && break; sleep 0.1; done
grep -q "epoch 1/3 " "$work/train.log" || fail "first epoch never finished: $(tail -5 "$work/train.log")"
kill -INT "$pid"
set +e; wait "$pid"; code=$?; set -e
[ "$code" -eq 130 ] || fail "interrupted train exited $code, expected 130: $(tail -5 "$work/train.log")"
[ -f "$work/run/checkpoint/state.json" ] || fail "no checkpoint after Ctrl-C"
[ ! -f "$work/run/model.pt" ] || fail "model.pt written by an interrupted run"
grep -q "resume" "$work/train.log" || fail "no resume hint"
"$bin" train --resume "$work/run" >"$work/resume.log" 2>&1 || fail "resume failed: $(tail -5 "$work/resume.log")"
grep -q "resuming" "$work/resume.log" || fail "resume did not continue the run"
[ "$(tail -n +2 "$work/run/history.csv" | wc -l)" -eq 3 ] || fail "history does not hold 3 epochs"
[ -f "$work/run/model.pt" ] || fail "no model after resume"

# Model info, and a truncated model file.
"$bin" info "$work/run/model.pt" | grep -q "cellnet" || fail "info does not name the architecture"
head -c 5000 "$work/run/model.pt" >"$work/cut.pt"
if "$bin" info "$work/cut.pt" >"$work/out" 2>&1; then fail "truncated model accepted"; fi
grep -q "truncated or corrupt" "$work/out" || fail "unclear truncated-model error: $(cat "$work/out")"

# predict: a corrupt file gets an error row, the others still get answers; exit 2 flags it.
printf 'not an image' >"$work/bad.png"
set +e; "$bin" predict --model "$work/run/model.pt" --csv "$work/data/Parasitized" "$work/bad.png" >"$work/pred.csv" 2>&1; code=$?; set -e
[ "$code" -eq 2 ] || fail "predict exit code $code with a bad file"
[ "$(grep -c -E ',(Parasitized|Uninfected),' "$work/pred.csv")" -eq 120 ] || fail "predict rows: $(head -3 "$work/pred.csv")"
grep -q "bad.png" "$work/pred.csv" || fail "bad file not reported"
# Numeric options are validated, with readable bounds.
for bad in "--rotation nan" "--zoom 5" "--color-jitter -5" "--epochs 0" "--lr 1e30"; do
  # shellcheck disable=SC2086
  if "$bin" train --data "$work/data" --out "$work/x" $bad >"$work/out" 2>&1; then fail "train accepted $bad"; fi
  grep -q "must be a number from" "$work/out" || fail "unclear error for $bad: $(cat "$work/out")"
  [ "$(wc -c <"$work/out")" -lt 400 ] || fail "error for $bad is too long: $(cat "$work/out")"
done

# predict takes regular files only: a symlink loop, a FIFO and /dev/zero are per-file errors.
ln -s loop.png "$work/loop.png"
mkfifo "$work/fifo.png"
set +e; timeout 60 "$bin" predict --model "$work/run/model.pt" --csv "$work/loop.png" "$work/fifo.png" /dev/zero "$work/data/Parasitized" >"$work/pred2.csv" 2>&1; code=$?; set -e
[ "$code" -eq 2 ] || fail "predict with special files exited $code"
grep -q "symbolic link loop" "$work/pred2.csv" || fail "loop not reported: $(head -3 "$work/pred2.csv")"
[ "$(grep -c "not a regular file" "$work/pred2.csv")" -eq 2 ] || fail "FIFO or /dev/zero not reported"
[ "$(grep -c -E ',(Parasitized|Uninfected),' "$work/pred2.csv")" -eq 120 ] || fail "other files not classified"
# A quote in a file name stays one CSV field.
cp "$data/Parasitized/$(ls "$data/Parasitized" | head -1)" "$work/we\"ird, name.png"
"$bin" predict --model "$work/run/model.pt" --csv "$work/we\"ird, name.png" >"$work/pred3.csv"
grep -q '"we""ird, name.png",Parasitized\|"we""ird, name.png",Uninfected' "$work/pred3.csv" || \
  grep -q 'we""ird, name.png",' "$work/pred3.csv" || fail "CSV quoting: $(cat "$work/pred3.csv")"

# Operating points: the model file holds both, and predict can use either.
"$bin" info "$work/run/model.pt" >"$work/info.txt"
grep -q "balanced threshold" "$work/info.txt" || fail "no balanced operating point: $(cat "$work/info.txt")"
grep -q "screening threshold" "$work/info.txt" || fail "no screening operating point"
"$bin" predict --model "$work/run/model.pt" --operating-point screening --json "$work/data/Parasitized" \
  >"$work/screening.json" || fail "predict --operating-point screening"
grep -q '"decision"' "$work/screening.json" || fail "no decision in predict --json"
if "$bin" predict --model "$work/run/model.pt" --operating-point sloppy "$work/data/Parasitized" >"$work/out" 2>&1; then
  fail "unknown operating point accepted"; fi
grep -q "balanced, screening" "$work/out" || fail "unknown point error does not list the points: $(cat "$work/out")"

# explain: an overlay per readable image (same size as the input), JSON heat maps, an error for
# the bad file and exit 2.
cells=("$work"/data/Parasitized/*)
set +e; "$bin" explain --model "$work/run/model.pt" --out "$work/explain" --json "${cells[@]:0:2}" "$work/bad.png" >"$work/explain.json" 2>"$work/explain.err"; code=$?; set -e
[ "$code" -eq 2 ] || fail "explain exit code $code with a bad file"
[ "$(ls "$work/explain" | grep -c '_gradcam.png$')" -eq 2 ] || fail "explain overlays: $(ls "$work/explain")"
grep -q '"heatmap":\[\[' "$work/explain.json" || fail "no heat map in explain --json"
grep -q '"error"' "$work/explain.json" || fail "bad file not reported by explain"
"$bin" explain --model "$work/run/model.pt" --pointing-game "$work/run/split.csv" --limit 20 \
  >"$work/pg.txt" 2>&1 || fail "pointing game: $(tail -3 "$work/pg.txt")"
grep -q "hit rate" "$work/pg.txt" || fail "pointing game result: $(cat "$work/pg.txt")"

# cv: patient folds; interrupted after the first fold, the same command keeps it and finishes.
cv=("$bin" --threads 2 cv --data "$work/data" --out "$work/cv" --folds 3 --epochs 1 --batch-size 16 --quiet)
"${cv[@]}" >"$work/cv.log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do grep -q "fold 2/3" "$work/cv.log" && break; sleep 0.1; done
grep -q "fold 2/3" "$work/cv.log" || fail "first fold never finished: $(tail -5 "$work/cv.log")"
kill -INT "$pid"
set +e; wait "$pid"; code=$?; set -e
[ "$code" -eq 130 ] || [ "$code" -eq 0 ] || fail "interrupted cv exited $code: $(tail -5 "$work/cv.log")"
"${cv[@]}" >"$work/cv2.log" 2>&1 || fail "cv did not finish: $(tail -5 "$work/cv2.log")"
grep -q "fold 1/3: finished earlier, kept" "$work/cv2.log" || fail "fold 1 was not kept: $(head -5 "$work/cv2.log")"
grep -q "accuracy.*±" "$work/cv/cv_summary.txt" || fail "no mean ± sd: $(head -5 "$work/cv/cv_summary.txt")"
[ -f "$work/cv/cv_report.html" ] || fail "no cv report"
# Every patient is tested in exactly one fold.
for k in 1 2 3; do awk -F, '$NF == "test" { print $(NF-1) }' "$work/cv/fold-$k/split.csv" | sort -u; done >"$work/tested"
[ "$(sort "$work/tested" | uniq -d | wc -l)" -eq 0 ] || fail "a patient is tested in two folds"
[ "$(wc -l <"$work/tested")" -eq "$(tail -n +2 "$work/run/split.csv" | awk -F, '{ print $(NF-1) }' | sort -u | wc -l)" ] \
  || fail "not every patient is tested once"
if "$bin" cv --data "$work/data" --out "$work/cv" --folds 3 --epochs 2 >"$work/out" 2>&1; then
  fail "cv continued a cross-validation with other options"; fi
grep -q "other options" "$work/out" || fail "unclear error for changed options: $(cat "$work/out")"

echo "cli_test: all checks passed"
