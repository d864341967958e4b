#!/usr/bin/env bash
# vm-guest.sh - runs as root inside the test VM (see vm-test.sh), in the
# repository: installs $JOBLET_DEB and checks the installed suite. Every
# check prints "PASS name" or "FAIL name: why"; the exit status is the
# number of failures.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
check() { # name command...: PASS when the command succeeds
	local name=$1; shift
	local out
	if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tail -5)"; fi
}
show() { echo "\$ $*"; "$@" 2>&1 | sed 's/^/  /'; }
mainpid() { systemctl show -p MainPID --value "$1"; }
wait_active() { # unit: wait up to 30 s for it to be active
	for _ in $(seq 60); do systemctl is-active --quiet "$1" && return 0; sleep 0.5; done
	return 1
}

echo "== host"
systemctl is-system-running --wait >/dev/null 2>&1
show uname -r
show stat -fc 'cgroup fs: %T' /sys/fs/cgroup
[[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] && pass "cgroup v2" || fail "cgroup v2" "not cgroup2fs"

echo "== install"
show dpkg -i "$JOBLET_DEB"
check "dpkg installed" dpkg -s joblet
show systemd-analyze verify /lib/systemd/system/joblet.target /lib/systemd/system/joblet-*.socket /lib/systemd/system/joblet-*.service
if systemd-analyze verify /lib/systemd/system/joblet.target /lib/systemd/system/joblet-*.socket \
	/lib/systemd/system/joblet-*.service 2>&1 | grep -q .; then
	fail "systemd-analyze verify" "it printed warnings (above)"
else
	pass "systemd-analyze verify"
fi
show id joblet
check "joblet system user" id joblet
show stat -c '%A %U:%G %n' /run/joblet /run/joblet/*.sock /opt/joblet/config /opt/joblet/config/* /var/lib/joblet
[[ $(stat -c '%a %U:%G' /run/joblet) == "750 root:joblet" ]] && pass "/run/joblet 0750 root:joblet" || fail "/run/joblet" "$(stat -c '%a %U:%G' /run/joblet)"
[[ $(stat -c '%a %U:%G' /run/joblet/isolator.sock) == "660 root:joblet" ]] && pass "isolator.sock 0660 root:joblet" || fail "isolator.sock" "$(stat -c '%a %U:%G' /run/joblet/isolator.sock)"
[[ $(stat -c '%a %U:%G' /opt/joblet/config/joblet-config.yml) == "640 root:joblet" ]] && pass "joblet-config.yml 0640 root:joblet" || fail "joblet-config.yml" "wrong mode"
[[ $(stat -c '%a %U' /opt/joblet/config/rnx-config.yml) == "600 root" ]] && pass "rnx-config.yml 0600 root" || fail "rnx-config.yml" "wrong mode"
check "viewer client config" test -s /opt/joblet/config/rnx-config-viewer.yml
show systemctl is-enabled joblet.target
check "joblet.target enabled" systemctl is-enabled --quiet joblet.target
show systemctl is-active joblet.target joblet-gateway.socket joblet-isolator.socket joblet-logd.socket joblet-netd.socket joblet-scheduler.socket
check "target and sockets active" systemctl is-active --quiet joblet.target joblet-gateway.socket \
	joblet-isolator.socket joblet-logd.socket joblet-netd.socket joblet-scheduler.socket

echo "== socket activation"
systemctl stop joblet-gateway.service joblet-isolator.service
show systemctl is-active joblet-gateway.service joblet-isolator.service
show rnx list
check "rnx list (root, system config)" rnx list
sleep 2
show systemctl show -p ActiveState -p NRestarts joblet-gateway.service joblet-isolator.service
if systemctl is-active --quiet joblet-gateway.service joblet-isolator.service &&
	[[ $(systemctl show -p NRestarts --value joblet-isolator.service) == 0 ]]; then
	pass "first connection started the gateway and the isolator"
else
	fail "socket activation" "services not active (see above)"
	show journalctl --no-pager -o short-monotonic -u 'joblet-*' -p warning
fi
show systemctl status --no-pager --lines=0 joblet-gateway.service joblet-isolator.service
if setpriv --reuid=nobody --regid=nogroup --clear-groups rnx list >/dev/null 2>&1; then
	fail "non-root cannot use the admin config" "rnx list worked as nobody"
else
	pass "non-root cannot use the admin config"
fi

echo "== gateway sandbox"
gw=$(mainpid joblet-gateway.service)
show ps -o user=,group=,cmd= -p "$gw"
show grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/"$gw"/status
[[ $(ps -o user= -p "$gw") == joblet ]] && pass "gateway runs as joblet" || fail "gateway user" "$(ps -o user= -p "$gw")"
if grep -q '^CapEff:.0000000000000000' /proc/"$gw"/status && grep -q '^CapBnd:.0000000000000000' /proc/"$gw"/status \
	&& grep -q '^NoNewPrivs:.1' /proc/"$gw"/status; then
	pass "gateway: no capabilities, no_new_privs"
else
	fail "gateway capabilities" "see status above"
fi
show systemd-analyze security --no-pager joblet-gateway.service
show ss -ltnp 'sport = :50051'

echo "== jobs"
show rnx run echo hi
[[ $(rnx run echo hi 2>/dev/null) == hi ]] && pass "rnx run echo hi" || fail "rnx run echo hi" "$(rnx run echo hi 2>&1 | tail -3)"
id=$(rnx run --detach echo journal-probe 2>/dev/null | sed -n 's/^ID: //p')
sleep 2
show rnx list
show journalctl -u joblet-isolator --no-pager -o verbose JOB_ID="$id" --output-fields=MESSAGE,JOB_ID,SERVICE,SYSLOG_IDENTIFIER,PRIORITY
if [[ -n $id ]] && journalctl -u joblet-isolator --no-pager JOB_ID="$id" -o cat | grep -q .; then
	pass "journalctl -u joblet-isolator JOB_ID=$id finds the job"
else
	fail "journald JOB_ID field" "no entries for job '$id'"
fi
show journalctl -u joblet-isolator --no-pager -o cat -n 5

echo "== isolator restart with a job running"
long=$(rnx run --detach sleep 600 2>/dev/null | sed -n 's/^ID: //p')
sleep 2
show rnx status "$long"
show systemd-cgls --no-pager -u joblet-isolator.service
before=$(pgrep -x sleep | head -1)
show systemctl restart joblet-isolator.service
wait_active joblet-isolator.service
sleep 2
show systemd-cgls --no-pager -u joblet-isolator.service
show rnx status "$long"
if [[ -n $before ]] && kill -0 "$before" 2>/dev/null; then
	pass "the job's process survived systemctl restart joblet-isolator"
else
	fail "job survives isolator restart" "sleep (pid ${before:-none}) is gone"
fi
if rnx status "$long" 2>/dev/null | grep -q 'Status: RUNNING'; then
	pass "the restarted isolator reports the job RUNNING"
else
	fail "job state after isolator restart" "$(rnx status "$long" 2>&1 | grep Status)"
fi
rnx stop "$long" >/dev/null 2>&1

echo "== other helpers"
for s in logd netd scheduler; do
	show systemctl status --no-pager --lines=3 joblet-$s.service
done

echo "== purge"
show dpkg --purge joblet
for p in /opt/joblet /var/lib/joblet /run/joblet /lib/systemd/system/joblet.target /usr/lib/joblet /usr/bin/rnx; do
	[[ -e $p ]] && fail "purge removes $p" "still there" || pass "purge removes $p"
done
getent passwd joblet >/dev/null && fail "purge removes the joblet user" "still there" || pass "purge removes the joblet user"
left=$(pgrep -a -f '/usr/lib/joblet/|sleep 600' || true)
[[ -z $left ]] && pass "no joblet process left" || fail "no joblet process left" "$left"
units=$(systemctl list-units --all --plain --no-legend 'joblet*' | grep -v 'not-found' || true)
[[ -z $units ]] && pass "no joblet unit loaded" || fail "no joblet unit loaded" "$units"

echo "== $fails failure(s)"
exit "$fails"
