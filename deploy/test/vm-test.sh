#!/usr/bin/env bash
# vm-test.sh - prove the .deb on a real systemd host: build it, boot a Debian
# bookworm VM (systemd as PID 1, cgroup v2) with ../shared/tools/vm-run.sh,
# and run vm-guest.sh inside, which installs the package and checks the
# units, socket activation, rnx, every resource limit on cgroup v2, job
# networks (the bridge by name, none, a custom one), a scheduled job,
# journald fields, the gateway's sandbox, `systemctl restart` of each
# helper with a job running, and purge. The guest has no NIC: every packet
# stays on its loopback or its job bridges (iptables, which netd needs, is in
# vm-run.sh's base image).
#
#   deploy/test/vm-test.sh            (make vm-test)
#
# Slow (software emulation: minutes), so not part of `make test`. Needs root
# for the first image build (cached in /var/tmp/vm-run-cache). Exit status:
# the guest suite's (0 = every check passed), 125 when the VM did not run.
# VM_RUN overrides the path of vm-run.sh; VM_TIMEOUT its time limit.
# VM_TEST_REQUIRED=1 (CI) makes a missing qemu a failure instead of a skip;
# without vm-run.sh itself the test is skipped with a clear line.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# vm-run.sh is the machine's tool, not ours: beside the checkout as on the
# development machine, at its usual place, or on PATH.
vmrun=${VM_RUN:-}
if [[ -z $vmrun ]]; then
	for c in "$root/../shared/tools/vm-run.sh" /work/shared/tools/vm-run.sh "$(command -v vm-run.sh || true)"; do
		if [[ -n $c && -x $c ]]; then
			vmrun=$c
			break
		fi
	done
fi
skip() {
	if [[ ${VM_TEST_REQUIRED:-} == 1 ]]; then
		echo "vm-test: FAIL: $* (VM_TEST_REQUIRED=1)" >&2
		exit 1
	fi
	echo "vm-test: SKIP: $*" >&2
	exit 0
}
if [[ -z $vmrun || ! -x $vmrun ]]; then
	# Without the tool nothing here can boot the VM; say so plainly rather
	# than fail every other test's result with it.
	echo "vm-test: SKIP: vm-run.sh not found (VM_RUN, ../shared/tools, /work/shared/tools, PATH): the VM test cannot run on this machine" >&2
	exit 0
fi
if ! command -v qemu-system-x86_64 >/dev/null && [[ $(id -u) != 0 ]]; then
	skip "qemu-system-x86_64 is missing and only root may install it"
fi

cd "$root"
make deb
deb=$(ls -t dist/joblet_*_amd64.deb | head -1)
echo "vm-test: testing $deb in a VM"
exec "$vmrun" --share "$root" --timeout "${VM_TIMEOUT:-900}" --cpus 2 --mem 2048 \
	-- "JOBLET_DEB=$deb bash deploy/test/vm-guest.sh"
