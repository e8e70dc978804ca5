# Thin wrapper: `make run` runs the main job, `make test` installs, builds and tests everything.
BUILD ?= build
JOBS ?= $(shell nproc)
DATA ?= $(MALARIA_DATA)

.PHONY: deps bench-deps fuzz-deps build run train test sanitize fuzz bench serve-bench format clean

deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/install-deps.sh; else sudo bash scripts/install-deps.sh; fi

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	bash scripts/run-default.sh $(BUILD)/malaria

train: deps build
	bash scripts/train-default.sh $(BUILD)/malaria "$(DATA)"

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 2

# Unit, model-file, server and hostile-client tests under AddressSanitizer + UBSan (build-asan/).
sanitize: deps
	bash scripts/sanitize.sh

# libFuzzer targets (clang): FUZZ_RUNS executions or FUZZ_SECONDS each, whichever comes first;
# crashers land in fuzz/regressions/.
FUZZ_SECONDS ?= 120
FUZZ_RUNS ?= 100000
fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_RUNS)

# The PyTorch reference runs on Debian's python3-torch; only the benchmark needs it.
bench-deps: deps
	@dpkg-query -W python3-torch python3-torchvision python3-opencv time >/dev/null 2>&1 || \
	  $$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends \
	  python3-torch python3-torchvision python3-opencv time >/dev/null

bench: bench-deps build
	bash bench/run.sh

serve-bench: deps build
	bash bench/serve_bench.sh

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD)
