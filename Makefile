# Thin wrapper: `make run` runs the main job, `make test` installs, builds and tests everything.
BUILD ?= build
JOBS ?= $(shell nproc)
DATA ?= $(if $(MALARIA_DATA),$(MALARIA_DATA),../shared/data/cell_images)

.PHONY: deps build run test bench format clean

deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/install-deps.sh; else sudo bash scripts/install-deps.sh; fi

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	bash scripts/run-default.sh $(BUILD)/malaria "$(DATA)"

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 2

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD)
