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
for bad in "--rotation nan" "--zoom 5" "--color-jitter -5" "--epochs 0" "--lr 1e30" "--seed abc" \
  "--epochs 2.5" "--seed -1"; do
  # shellcheck disable=SC2086
  if "$bin" train --data "$work/data" --out "$work/x" $bad >"$work/out" 2>&1; then fail "train accepted $bad"; fi
  grep -q -E "must be a (whole )?number from" "$work/out" || fail "unclear error for $bad: $(cat "$work/out")"
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

# An image that is no cell (8x8 of flat purple) is Rejected with its reason, never labelled.
echo 'iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAK0lEQVQIHW3BAQEAAADBMHoJ9iTyKmAzqR6T6jGpHpPqMakek+oxqR6T6hl3IApZPIs5TgAAAABJRU5ErkJggg==' \
  | base64 -d >"$work/flat.png"
"$bin" predict --model "$work/run/model.pt" --csv "$work/flat.png" >"$work/pred4.csv"
grep -q '^[^,]*flat.png,,,Rejected,,too small' "$work/pred4.csv" || fail "flat image not Rejected: $(cat "$work/pred4.csv")"
"$bin" predict --model "$work/run/model.pt" --json "$work/flat.png" >"$work/pred4.json"
grep -q '"label": null' "$work/pred4.json" || fail "a Rejected image has a label: $(cat "$work/pred4.json")"
"$bin" explain --model "$work/run/model.pt" --json "$work/flat.png" >"$work/explain-flat.json"
grep -q '"decision":"Rejected"' "$work/explain-flat.json" || fail "explain labelled a non-cell: $(cat "$work/explain-flat.json")"
if grep -q '"heatmap"' "$work/explain-flat.json"; then fail "explain drew a heat map of a non-cell"; fi

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

# Smear fields: screen writes an overlay per field, a CSV row per field and the JSON schema; a
# corrupt field is an error for that file only (exit 2).
fields=$(dirname "$data")/fields/iml
field_model=$(dirname "$0")/../models/malaria-field-64.pt
cp "$fields/images/PA171690.JPG" "$fields/images/PA171700.JPG" "$work/"
head -c 3000 "$work/PA171700.JPG" >"$work/cut.JPG"
set +e
"$bin" screen --model "$field_model" "$work/PA171690.JPG" "$work/PA171700.JPG" "$work/cut.JPG" \
  --slide S-7 --out "$work/screen" --json "$work/screen.json" --rbc-per-ul 4500000 >"$work/screen.log" 2>&1
code=$?
set -e
[ "$code" -eq 2 ] || fail "screen with a corrupt field exited $code: $(tail -3 "$work/screen.log")"
grep -q "cut.JPG" "$work/screen.log" || fail "no error for the corrupt field"
grep -q "slide S-7: 2 of 2 fields usable" "$work/screen.log" || fail "no slide line: $(tail -3 "$work/screen.log")"
[ "$(tail -n +2 "$work/screen/fields.csv" | wc -l)" -eq 2 ] || fail "fields.csv rows"
python3 - "$work/screen/fields.csv" "$work/screen.json" <<'PY' || fail "fields.csv stage columns"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
doc = json.load(open(sys.argv[2]))
for row, f in zip(rows, doc["fields"]):
    stages = f["summary"]["stages"]
    assert all(int(row[k]) == stages[k] for k in stages), (row, stages)
PY
python3 - "$work/screen.json" "$work/screen/PA171690_screen.png" <<'PY' || fail "screen JSON or overlay"
import json, struct, sys
doc = json.load(open(sys.argv[1]))
keys = {"cells", "parasitized", "inconclusive", "parasitemia_percent", "ci_low", "ci_high"}
assert keys <= set(doc["slide"]) and doc["slide"]["name"] == "S-7", doc["slide"]
assert len(doc["fields"]) == 2
total = 0
for f in doc["fields"]:
    assert {"file", "width", "height", "cells", "summary"} <= set(f) and keys <= set(f["summary"])
    assert (f["width"], f["height"]) == (1280, 960)
    assert len(f["cells"]) == f["summary"]["cells"] > 80
    for c in f["cells"]:
        assert {"x", "y", "w", "h", "probability_parasitized", "decision"} <= set(c)
        assert 0 <= c["x"] and c["x"] + c["w"] <= 1280 and 0 <= c["y"] and c["y"] + c["h"] <= 960
    assert f["summary"]["ci_low"] <= f["summary"]["parasitemia_percent"] <= f["summary"]["ci_high"]
    assert f["segmenter"] == "detector", f["segmenter"]
    for c in f["cells"]:
        assert (c["stage"] is not None) == (c["label"] == "Parasitized"), c
    assert sum(f["summary"]["stages"].values()) == f["summary"]["parasitized"]
    total += f["summary"]["cells"]
assert doc["slide"]["cells"] == total
assert doc["slide"]["parasites_per_ul"]["rbc_per_ul"] == 4500000
assert doc["slide"]["parasites_per_ul"]["rbc_per_ul_assumed"] is False
c = doc["slide"]["corrected"]
assert c["ci_low"] <= c["parasitemia_percent"] <= c["ci_high"] and c["parasites_per_ul"]["rbc_per_ul"] == 4500000, c
png = open(sys.argv[2], "rb").read(24)
assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 960)
PY

# info tells a detector file from a classifier file and summarises either.
"$bin" info "$(dirname "$0")/../models/malaria-detector.pt" >"$work/out" 2>&1 || fail "info on the detector: $(cat "$work/out")"
grep -q "^detector .*score threshold" "$work/out" && grep -q "^test .*recall" "$work/out" || fail "detector info: $(cat "$work/out")"

# The classical segmentation stays available for comparison; it tells no stages.
"$bin" screen --model "$field_model" --segmenter classic "$work/PA171690.JPG" --json "$work/classic.json" \
  >/dev/null 2>&1 || fail "screen --segmenter classic"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); f=d["fields"][0]; assert f["segmenter"]=="classic" and "stages" not in f["summary"], f["summary"]; assert d["slide"]["corrected"] is None and any("No corrected figure" in w for w in d["slide"]["warnings"]), d["slide"]' \
  "$work/classic.json" || fail "classic screening JSON (no correction with rates measured on the detector)"
set +e
"$bin" screen --model "$field_model" --rbc-per-ul 12 "$work/PA171690.JPG" >"$work/out" 2>&1
code=$?
"$bin" screen --model "$field_model" --detector "$field_model" "$work/PA171690.JPG" >"$work/out2" 2>&1
code2=$?
set -e
[ "$code" -ne 0 ] && grep -q "rbc-per-ul" "$work/out" || fail "an impossible red-cell count was taken: $(cat "$work/out")"
[ "$code2" -ne 0 ] && grep -q "not a malaria-cell-detector" "$work/out2" ||
  fail "a classifier file taken as the detector: $(cat "$work/out2")"

# Annotated fields as CSV: evaluate-fields reports detection, cells and parasitemia, with figures;
# train --fields cuts their cells into the training data, the field group as the patient.
mkdir -p "$work/fields"
python3 - "$fields" "$work/fields" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
rows = ["image,x,y,w,h,label,group"]
for k, entry in enumerate(sorted(json.load(open(src + "/annotations.json")), key=lambda e: e["image_name"])[:40:8]):
    os.symlink(f"{src}/images/{entry['image_name']}", f"{dst}/{entry['image_name']}")
    for o in entry["objects"]:
        b = o["bbox"]
        rows.append(f"{entry['image_name']},{b['x']},{b['y']},{b['w']},{b['h']},{o['type']},fields-{k}")
open(dst + "/annotations.csv", "w").write("\n".join(rows) + "\n")
PY
"$bin" evaluate-fields --model "$field_model" --fields "$work/fields" --out "$work/fields-eval" \
  >"$work/ef.log" 2>&1 || fail "evaluate-fields: $(tail -3 "$work/ef.log")"
grep -q "Detection recall" "$work/ef.log" || fail "no detection line: $(cat "$work/ef.log")"
for f in evaluation.json report.html figures/parasitemia.png figures/worst-1.png figures/lowest-recall-1.png; do
  [ -s "$work/fields-eval/$f" ] || fail "evaluate-fields wrote no $f"; done
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['fields'] == 5 and d['detection']['recall_uninfected'] > 0.9, d['detection']; assert d['segmenter'] == 'detector' and len(d['stages']['confusion']) == 4 and 'groups_within_25_percent' in d['parasitemia'] and d['detection']['field_recall_min'] > 0.5, d" \
  "$work/fields-eval/evaluation.json" || fail "evaluate-fields figures"
grep -q "Recall per field" "$work/ef.log" && grep -q "Stages: accuracy" "$work/ef.log" || fail "no recall or stage line: $(cat "$work/ef.log")"
# Error rates for the correction are chosen on validation fields only.
if "$bin" evaluate-fields --model "$field_model" --fields "$work/fields" --write-model "$work/x.pt" >"$work/out" 2>&1; then
  fail "--write-model without a validation part was accepted"; fi
grep -q "validation fields only" "$work/out" || fail "no reason for refusing --write-model: $(cat "$work/out")"
"$bin" --threads 2 train --data "$work/data" --fields "$work/fields" --out "$work/field-run" --epochs 1 \
  --max-steps 5 --quiet >"$work/ft.log" 2>&1 || fail "train --fields: $(tail -3 "$work/ft.log")"
ls "$work/field-run/field-cells/Parasitized" | grep -q "^fields-[0-9]_IMG_" || fail "no field cells"
grep -q '"infected_boxes"' "$work/field-run/data_summary.json" || fail "no field summary"
grep -q ',fields-[0-9],' "$work/field-run/split.csv" || fail "field groups are not in the split"

# A FIFO given as a model file is refused at once by every command, never waited on.
mkfifo "$work/fifo.pt"
for args in "info $work/fifo.pt" "predict --model $work/fifo.pt $work/PA171690.JPG" \
  "screen --model $work/fifo.pt $work/PA171690.JPG" "explain --model $work/fifo.pt --out $work/x $work/PA171690.JPG" \
  "evaluate-fields --model $work/fifo.pt --fields $work/fields" "serve --model $work/fifo.pt --port 0"; do
  set +e
  # shellcheck disable=SC2086
  timeout 120 "$bin" $args >"$work/out" 2>&1
  code=$?
  set -e
  [ "$code" -ne 124 ] || fail "'$args' hung on a FIFO"
  [ "$code" -ne 0 ] || fail "'$args' accepted a FIFO"
  grep -q "not a regular file" "$work/out" || fail "'$args': unclear error: $(tail -2 "$work/out")"
done

# A symbolic-link loop is an error for that path alone, named or inside a slide folder.
mkdir -p "$work/loop" "$work/slide"
ln -s b "$work/loop/a"; ln -s a "$work/loop/b"
cp "$work/PA171690.JPG" "$work/slide/"; ln -s y.jpg "$work/slide/x.jpg"; ln -s x.jpg "$work/slide/y.jpg"
for inputs in "$work/PA171690.JPG $work/loop/a" "$work/slide"; do
  set +e
  # shellcheck disable=SC2086
  "$bin" screen --model "$field_model" $inputs >"$work/out" 2>&1
  code=$?
  set -e
  [ "$code" -eq 2 ] || fail "screen $inputs exited $code: $(tail -3 "$work/out")"
  grep -q "symbolic link loop" "$work/out" || fail "no link-loop error: $(cat "$work/out")"
  grep -q "PA171690.JPG .* cells" "$work/out" || fail "the good field was not screened: $(cat "$work/out")"
done

# A photo that is no smear field fails its quality verdict and gets no parasitemia.
python3 - "$work/noise.png" <<'PY'
import random, struct, sys, zlib
w, h = 640, 480
raw = b"".join(b"\0" + bytes(random.getrandbits(8) for _ in range(3 * w)) for _ in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
"$bin" screen --model "$field_model" "$work/noise.png" --out "$work/noise" >"$work/out" 2>&1 ||
  fail "screen of a noise image: $(tail -3 "$work/out")"
grep -q "not counted (quality: fail)" "$work/out" || fail "noise passed the quality verdict: $(cat "$work/out")"
grep -q "none usable: no parasitemia" "$work/out" || fail "noise got a parasitemia: $(cat "$work/out")"
grep -q ",fail," "$work/noise/fields.csv" || fail "fields.csv has no failed verdict"

# The records from the command line: screen --store keeps a slide; slides list/show/export see it;
# the exported corrections are what train --fields reads; users get a token once; purge.
store="sqlite:$work/records.db"
mkdir -p "$work/slide-a"
ls "$fields/images" | sort | head -2 | while read -r f; do ln -s "$fields/images/$f" "$work/slide-a/$f"; done
"$bin" screen "$work/slide-a" --store "$store" --site north --operator amy --stain Giemsa \
  >"$work/out" 2>&1 || fail "screen --store: $(tail -3 "$work/out")"
grep -q "stored as slide s" "$work/out" || fail "screen --store named no slide: $(tail -3 "$work/out")"
"$bin" slides list --store "$store" | grep -q "slide-a .*north .*screened .*2" || fail "slides list"
slide=$("$bin" slides list --store "$store" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$bin" slides show "$slide" --store "$store" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["field_count"] == 2 and len(d["fields"]) == 2 and d["fields"][0]["cells"], d.keys()
assert [e["action"] for e in d["audit"]] == ["create", "add_field", "add_field"], d["audit"]' || fail "slides show"
"$bin" slides export --store "$store" --format csv | head -1 | grep -q "^id,sample_id,site" || fail "slides export csv"
"$bin" slides export --store "$store" --slide "$slide" --annotations "$work/unsigned" 2>"$work/out"
grep -q "left out 1 unsigned" "$work/out" || fail "an unsigned slide was exported as corrections: $(cat "$work/out")"
"$bin" slides export --store "$store" --slide "$slide" --annotations "$work/corrections" --include-unsigned 2>"$work/out" ||
  fail "export --annotations: $(cat "$work/out")"
[ "$(ls "$work/corrections/images" | wc -l)" -eq 2 ] || fail "export wrote no field images"
"$bin" --threads 2 train --data "$work/data" --fields "$work/corrections" --out "$work/corrections-run" \
  --epochs 1 --max-steps 3 --quiet >"$work/ct.log" 2>&1 || fail "train --fields on exported corrections: $(tail -3 "$work/ct.log")"
grep -q "$slide" "$work/corrections-run/split.csv" || fail "the slide is not a group of the training split"
token=$("$bin" users add rita --role reviewer --store "$store" 2>/dev/null | tail -1)
[[ $token == mal_* ]] || fail "users add printed no token: $token"
"$bin" users list --store "$store" | grep -q "rita .*reviewer" || fail "users list"
if "$bin" users add rita --role admin --store "$store" >"$work/out" 2>&1; then fail "a second rita was added"; fi
if "$bin" users add bob --role owner --store "$store" >"$work/out" 2>&1; then fail "an unknown role was taken"; fi
"$bin" store purge --older-than 0 --store "$store" | grep -q "purged 0 field images" ||
  fail "purge removed the images of a slide still in review"
if "$bin" users sites rita --store "$store" >"$work/out" 2>&1; then fail "users sites without a site granted every site"; fi
"$bin" users sites rita --site north --store "$store" 2>/dev/null || fail "users sites --site"
"$bin" users list --store "$store" | grep -q "rita .*reviewer .*north" || fail "the grant is not listed"
"$bin" users list --store "$store" | grep -q "rita .*token never expires" || fail "no expiry not listed"
rotated=$("$bin" users rotate rita --valid-days 30 --store "$store" 2>/dev/null | tail -1)
[[ $rotated == mal_* && $rotated != "$token" ]] || fail "users rotate printed no new token: $rotated"
"$bin" users list --store "$store" | grep -q "rita .*token expires 20" || fail "the expiry is not listed"
if "$bin" users rotate rita --valid-days 5000 --store "$store" >"$work/out" 2>&1; then fail "a 5000-day token was issued"; fi
"$bin" users remove rita --store "$store" 2>/dev/null || fail "users remove"
"$bin" users list --store "$store" | grep -q rita && fail "a removed user is still listed"
"$bin" store audit --store "$store" | python3 -c '
import json, sys
actions = [e["action"] for e in json.load(sys.stdin)]
assert actions == ["user_add", "purge", "user_sites", "user_token", "user_remove"], actions' || fail "store audit"
if "$bin" slides list --store "mysql://x" >"$work/out" 2>&1; then fail "an unknown store was taken"; fi
grep -q "sqlite:PATH or postgresql://" "$work/out" || fail "no hint for a bad store: $(cat "$work/out")"

echo "cli_test: all checks passed"
