# FastBlocks - the README's commands. Each target installs what is missing
# (scripts/install-deps), then builds with CMake into build/.
#
#   make            deps + build (build/fastblocks, build/python)
#   make run        deps + build + serve on 127.0.0.1:8000 with data in ./data
#   make test       deps + build + the whole test suite (ctest)
#   make bench      benchmarks with their peers, results in bench/results/
#   make format     clang-format every C file; make format-check only checks
#   make clean      remove build directories

BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
C_FILES = $(shell find include src tests python bench -name '*.[ch]' 2>/dev/null)

.PHONY: all build deps deps-test deps-bench run test bench format format-check clean

all: deps build

deps:
	@scripts/install-deps build

deps-test:
	@scripts/install-deps test

deps-bench:
	@scripts/install-deps bench

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	mkdir -p data
	$(BUILD)/fastblocks serve --data ./data --listen 127.0.0.1:8000

test: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: deps-bench build
	bench/run-all --build $(BUILD)

format: deps-test
	clang-format -i $(C_FILES)

format-check: deps-test
	clang-format --dry-run --Werror $(C_FILES)

clean:
	rm -rf build build-*
