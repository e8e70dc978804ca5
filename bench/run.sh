#!/usr/bin/env bash
# `make bench`: end-to-end training and evaluation throughput of `malaria` against the PyTorch
# reference, side by side on the same machine and data, the compute-only ceiling of the same
# networks, and peak memory. Prints a table and writes bench/results/CPU-MODEL/results.json:
# figures are only comparable on the same CPU, so each CPU model keeps its own file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/build/malaria}
compute=${COMPUTE:-$here/build/bench/bench_compute}
shared=${SHARED:-$here/../shared}
# 150 steps: long enough that the first steps (fresh memory faulted in, about 1.5 s here) weigh
# little in either tool, short enough for `make bench` to stay under 10 minutes on an AVX2 CPU.
steps=${BENCH_STEPS:-150}
threads=${BENCH_THREADS:-2}
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile' | tr '\n' ' ' || true)
# bfloat16 only where the CPU computes it natively: elsewhere it is emulated and ~10x slower.
if echo "$cpu_flags" | grep -qE 'avx512_bf16|amx_bf16'; then native_bf16=1; else native_bf16=0; fi
out=$here/bench/results/$(echo "$cpu_model" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')
# ONEDNN_MAX_CPU_ISA=AVX2 (with OPENBLAS_CORETYPE=Haswell) runs both tools' kernels at AVX2 width
# on a larger CPU: the AVX2 code paths, measured side by side, kept in their own folder.
isa_cap=${ONEDNN_MAX_CPU_ISA:-${DNNL_MAX_CPU_ISA:-}}
if [ -n "$isa_cap" ]; then
  out=$out-isa-$isa_cap
  case $isa_cap in AVX512_CORE_BF16 | AVX512_CORE_AMX* | ALL) ;; *) native_bf16=0 ;; esac
  cpu_flags="$cpu_flags(kernels capped at $isa_cap) "
fi
echo "CPU: $cpu_model; flags: ${cpu_flags:-none of avx2/avx512/bf16/amx}; native bf16: $native_bf16" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4

# Peak resident memory (KiB) of a command, its output kept in $tmp/$1.out.
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%M %e" -o "$tmp/$name.time" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || {
    echo "bench: '$*' failed:" >&2
    tail -20 "$tmp/$name.err" >&2
    exit 1
  }
}

run_config() {  # name arch size data
  local name=$1 arch=$2 size=$3 data=$4
  echo "== $name: $arch at ${size}x$size on $data ($steps steps of 32, augmentation on)" >&2
  timed "$name-ours-train" "$bin" --threads "$threads" train --data "$data" --out "$tmp/$name-run" --arch "$arch" \
    --image-size "$size" --epochs 1 --max-steps "$steps" --split random --quiet --no-bf16
  if [ "$native_bf16" = 1 ]; then
    timed "$name-ours-bf16" "$bin" --threads "$threads" train --data "$data" --out "$tmp/$name-bf16" --arch "$arch" \
      --image-size "$size" --epochs 1 --max-steps "$steps" --split random --quiet --bf16
  fi
  timed "$name-ours-eval" "$bin" --threads "$threads" evaluate --model "$tmp/$name-run/model.pt" --data "$data" \
    --json "$tmp/$name-eval.json"
  # The same network in both tools (bench/reference_pytorch.py is the shared reference plus
  # our default network).
  timed "$name-reference" env LD_PRELOAD="$tcmalloc" /usr/bin/python3 "$here/bench/reference_pytorch.py" \
    --arch "$arch" --data "$data" --image-size "$size" --epochs 1 --max-steps "$steps" --threads "$threads"
}

run_config original seed 128 "$shared/data/cell_images_128"
run_config default cellnet 64 "$shared/data/cell_images"

echo "== memory: one full epoch on all 22,080 images, without and with --cache" >&2
timed mem-stream "$bin" --threads "$threads" train --data "$shared/data/cell_images" --out "$tmp/mem-stream" \
  --epochs 1 --quiet --fractions 0.98 0.01 0.01
timed mem-cache "$bin" --threads "$threads" train --data "$shared/data/cell_images" --out "$tmp/mem-cache" \
  --epochs 1 --quiet --cache --fractions 0.98 0.01 0.01

echo "== compute-only ceiling (synthetic batches of 32) and where a step's time goes" >&2
"$compute" --benchmark_filter='(train_step|infer)/(seed_128|cellnet_64)/2' --benchmark_format=json >"$tmp/compute.json" 2>/dev/null
"$(dirname "$compute")/layer_profile" --threads "$threads" >"$out/layer-profile-seed-128.md"

echo "== smear fields: time per 1280x960 field on one core" >&2
"$(dirname "$compute")/bench_field" --benchmark_format=json >"$tmp/field.json" 2>/dev/null

mkdir -p "$out"
/usr/bin/python3 - "$tmp" "$out" "$steps" "$threads" "$cpu_flags" <<'PY'
import json, sys, os, platform, subprocess
tmp, out, steps, threads, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
def peak(name):
    kib, secs = open(f"{tmp}/{name}.time").read().split()
    return int(kib) / 1024.0, float(secs)
def history(run):
    return json.load(open(f"{tmp}/{run}/history.json"))[-1]
compute = {b["name"].split("/min_time")[0]: b["items_per_second"] for b in json.load(open(f"{tmp}/compute.json"))["benchmarks"]}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
res = {"machine": {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "threads_used": threads,
                   "kernel": platform.release()},
       "steps": steps, "batch_size": 32, "configs": {}}
for name, arch, size, key in [("original", "seed", 128, "seed_128"), ("default", "cellnet", 64, "cellnet_64")]:
    ours_train = history(f"{name}-run")["images_per_second"]
    ours_eval = json.load(open(f"{tmp}/{name}-eval.json"))["images_per_second"]
    ref = json.loads(open(f"{tmp}/{name}-reference.out").read().strip().splitlines()[-1])
    has_bf16 = os.path.exists(f"{tmp}/{name}-bf16/history.json")
    ours_bf16 = history(f"{name}-bf16")["images_per_second"] if has_bf16 else None
    ceiling_train = compute.get(f"train_step/{key}/2")
    ceiling_infer = compute.get(f"infer/{key}/2")
    res["configs"][name] = {
        "arch": arch, "image_size": size,
        "ours_train_images_per_s": round(ours_train, 1), "reference_train_images_per_s": ref["train_images_per_s"],
        "train_speedup": round(ours_train / ref["train_images_per_s"], 2),
        "ours_train_bf16_images_per_s": round(ours_bf16, 1) if has_bf16 else "n/a (no native bf16)",
        "train_bf16_speedup": round(ours_bf16 / ref["train_images_per_s"], 2) if has_bf16 else None,
        "ours_eval_images_per_s": round(ours_eval, 1), "reference_eval_images_per_s": ref["eval_images_per_s"],
        "eval_speedup": round(ours_eval / ref["eval_images_per_s"], 2),
        "compute_ceiling_train_images_per_s": round(ceiling_train, 1) if ceiling_train else None,
        "share_of_ceiling": round(ours_train / ceiling_train, 3) if ceiling_train else None,
        "compute_ceiling_infer_images_per_s": round(ceiling_infer, 1) if ceiling_infer else None,
        "ours_train_peak_mib": round(peak(f"{name}-ours-train")[0]),
        "ours_eval_peak_mib": round(peak(f"{name}-ours-eval")[0]),
        "reference_peak_mib": round(peak(f"{name}-reference")[0]),
        "reference_arch": ref.get("arch", "seed"),
    }
res["memory_full_epoch_22080_images"] = {
    "stream_peak_mib": round(peak("mem-stream")[0]), "cache_peak_mib": round(peak("mem-cache")[0]),
    "decoded_cache_mib": round(22080 * 64 * 64 * 3 / 2**20),
    "stream_wall_s": peak("mem-stream")[1], "cache_wall_s": peak("mem-cache")[1]}
field = {b["name"].split("/min_time")[0]: b["real_time"] for b in json.load(open(f"{tmp}/field.json"))["benchmarks"]}
res["field_ms_per_1280x960_one_core"] = {"detector": round(field["detect"], 1),
                                         "classic_segmentation": round(field["segment"], 1),
                                         "screen_with_detector": round(field["screen/1"], 1),
                                         "screen_with_classic": round(field["screen/0"], 1)}
json.dump(res, open(f"{out}/results.json", "w"), indent=2)
print(f"\n{'config':10} {'ours train':>11} {'ref train':>10} {'speedup':>8} {'ceiling':>8} {'of ceil':>8} {'bf16':>7} "
      f"{'ours eval':>10} {'ref eval':>9} {'speedup':>8} {'peak MiB':>9}")
for name, c in res["configs"].items():
    print(f"{name:10} {c['ours_train_images_per_s']:>11} {c['reference_train_images_per_s']:>10} {c['train_speedup']:>7}x "
          f"{c['compute_ceiling_train_images_per_s']:>8} {100*(c['share_of_ceiling'] or 0):>7.1f}% {str(c['train_bf16_speedup'] or 'n/a'):>6}x "
          f"{c['ours_eval_images_per_s']:>10} {c['reference_eval_images_per_s']:>9} {c['eval_speedup']:>7}x "
          f"{c['ours_train_peak_mib']:>9}")
m = res["memory_full_epoch_22080_images"]
print(f"\nfull epoch, 22,080 images: peak {m['stream_peak_mib']} MiB streaming, {m['cache_peak_mib']} MiB with --cache "
      f"(decoded images: {m['decoded_cache_mib']} MiB)")
f = res["field_ms_per_1280x960_one_core"]
print(f"smear field 1280x960, one core: detector {f['detector']} ms (classic segmentation "
      f"{f['classic_segmentation']} ms); end to end {f['screen_with_detector']} ms "
      f"(classic {f['screen_with_classic']} ms; target 250 ms)")
print(f"CPU: {cpu}\nresults: {out}/results.json")
PY
