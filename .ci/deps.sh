#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what udfs needs to build, test and benchmark on Debian 12 (root).
# glusterfs-*: tests/cluster runs a GlusterFS volume on this machine.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
	build-essential pkg-config ca-certificates \
	libfuse3-dev fuse3 libzstd-dev zstd libsqlite3-dev sqlite3 \
	libopenblas-dev liblapacke-dev libjansson-dev libssl-dev \
	libxxhash-dev attr clang libclang-rt-14-dev \
	squashfuse squashfs-tools python3 python3-numpy groff-base util-linux \
	procps strace glusterfs-server glusterfs-client
# PyTorch only for the task-quality evaluation scripts in ../shared/eval.
if [ "${UDFS_WITH_TORCH:-0}" = 1 ]; then
	apt-get install -y -q --no-install-recommends python3-torch
fi
