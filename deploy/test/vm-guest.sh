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
rnx() { timeout -k 5 90 /usr/bin/rnx "$@"; } # a hung call fails (124, or 137 if it ignores TERM) instead of using up the VM's time
mainpid() { systemctl show -p MainPID --value "$1"; }
wait_active() { # unit: wait up to 30 s for it to be active
	for _ in $(seq 60); do systemctl is-active --quiet "$1" && return 0; sleep 0.5; done
	return 1
}
hdr_id() { sed -n 's/^ID: //p' "$@" | head -1; } # the job id from a job header
field() { rnx status "$1" 2>/dev/null | sed -n "s/^$2: //p"; } # id key: one line of rnx status
wait_ended() { # id [secs]: wait up to secs (60) for the job to reach a final state
	local end=$((SECONDS + ${2:-60}))
	while ((SECONDS < end)); do
		field "$1" Status | grep -qxE 'COMPLETED|FAILED|STOPPED|CANCELED' && return 0
		sleep 0.5
	done
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
probe=$(rnx run --detach echo journal-probe 2>&1)
id=$(echo "$probe" | sed -n 's/^ID: //p')
[[ -n $id ]] || echo "  rnx run --detach echo journal-probe gave no job id: $probe"
sleep 2
show rnx list
show journalctl -u joblet-isolator --no-pager -o verbose JOB_ID="$id" --output-fields=MESSAGE,JOB_ID,SERVICE,SYSLOG_IDENTIFIER,PRIORITY
if [[ -n $id ]] && journalctl -u joblet-isolator --no-pager JOB_ID="$id" -o cat | grep -q .; then
	pass "journalctl -u joblet-isolator JOB_ID=$id finds the job"
else
	fail "journald JOB_ID field" "no entries for job '$id'"
fi
show journalctl -u joblet-isolator --no-pager -o cat -n 5
# The job's init runs from the packaged init binary's sealed copy, not from the isolator's.
if journalctl -u joblet-isolator --no-pager -o cat | grep -q "jobs' inits run from the init binary"; then
	pass "jobs' inits run from /usr/lib/joblet/joblet-sandbox-init"
else
	fail "init binary" "$(journalctl -u joblet-isolator --no-pager -o cat | grep -i 'init binary' | tail -2)"
fi
# A running job's shim runs from the packaged shim binary's sealed copy, not from the isolator's.
id=$(rnx run --detach sleep 20 2>/dev/null | hdr_id)
sleep 2
shim=$(pgrep -x joblet-shim | head -1 || true)
exe=$([[ -n $shim ]] && readlink "/proc/$shim/exe" || true)
if [[ $exe == *memfd:joblet-shim* ]]; then
	pass "jobs' shims run from /usr/lib/joblet/joblet-shim"
else
	fail "shim binary" "shim pid '$shim' runs from '$exe'"
fi
[[ -n $id ]] && rnx stop "$id" >/dev/null 2>&1 || true

echo "== limits (cgroup v2)"
# Detached, with a generous wait: under software emulation on a busy host
# the job takes tens of seconds to reach the limit.
id=$(rnx run --detach --max-memory=64 sh -c 'head -c 200m /dev/zero | tail > /dev/null' 2>/dev/null | hdr_id)
wait_ended "$id" 180
show rnx status "$id"
st=$(rnx status "$id" 2>&1)
if grep -q 'Status: FAILED' <<<"$st" && grep -q 'out of memory' <<<"$st"; then
	pass "--max-memory=64, 200 MB allocation: FAILED, out of memory"
else
	fail "--max-memory=64" "$(grep -E 'Status|Reason' <<<"$st")"
fi

ms() { # a Go duration as rnx prints it ("612ms", "1.2s", "0s") in ms; -1 if not one
	awk -v d="$1" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print int(d) } else if (d ~ /[0-9]s$/) { sub(/s$/, "", d); print int(d * 1000) } else print -1 }'
}
# `timeout 3` runs for more than 3 s under software emulation, and the cgroup
# also pays for the job's setup before it starts, so the loop is measured two
# ways against 25% of the time it really had: its own CPU time (bash's
# `time`), and the cgroup's (rnx status) over the job's life, Created to
# Ended (whole seconds, so half a second of slack).
id=$(rnx run --detach --max-cpu=25 bash -c "time timeout 3 sh -c 'while :; do :; done'" 2>/dev/null | hdr_id)
wait_ended "$id" 120
rnx log "$id" >/dev/null 2>/tmp/cpu.err # bash's `time` report is the job's stderr
show rnx status "$id"
show grep -E '^(real|user|sys)' /tmp/cpu.err
secs() { awk -v t="$(sed -n "s/^$1\t//p" /tmp/cpu.err)" 'BEGIN { split(t, a, "m"); sub(/s$/, "", a[2]); print a[1] * 60 + a[2] }'; }
real=$(secs real) user=$(secs user) sys=$(secs sys)
cpu=$(field "$id" 'CPU Time')
life=$(($(date -d "$(field "$id" Ended)" +%s) - $(date -d "$(field "$id" Created)" +%s)))
echo "  the loop: ${user}s user + ${sys}s sys in ${real}s; the job: CPU Time $cpu over ${life}s from Created to Ended"
if awk -v u="$user" -v s="$sys" -v r="$real" 'BEGIN { exit !(u + s > 0.1 && u + s <= 0.25 * r * 1.1 + 0.05) }'; then
	pass "--max-cpu=25, busy loop 3 s: the loop used $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')s of CPU in ${real}s (<= 25%)"
else
	fail "--max-cpu=25 (the loop)" "${user}s user + ${sys}s sys in ${real}s: more than 25%"
fi
if (($(ms "$cpu") > 0)) && awk -v c="$(ms "$cpu")" -v l="$life" 'BEGIN { exit !(c <= 250 * (l + 0.5)) }' &&
	[[ $(field "$id" 'Max CPU') == 25% ]]; then
	pass "--max-cpu=25: rnx status CPU Time $cpu <= 25% of the job's ${life}s"
else
	fail "--max-cpu=25 (rnx status)" "CPU Time '$cpu' over ${life}s, Max CPU '$(field "$id" 'Max CPU')'"
fi
awk -v c="$(ms "$cpu")" 'BEGIN { exit !(c <= 800) }' ||
	echo "  note: CPU Time $cpu is above 0.8 s: under emulation the job's setup and the startup of bash and timeout are charged to it too"

out=$(rnx run --cpu-cores=0 grep Cpus_allowed_list /proc/self/status 2>/dev/null)
show echo "$out"
if [[ $(echo $out) == "Cpus_allowed_list: 0" ]]; then
	pass "--cpu-cores=0: Cpus_allowed_list: 0"
else
	fail "--cpu-cores=0" "got '$out'"
fi

id=$(rnx run --detach --max-pids=64 bash -c 'for i in $(seq 200); do sleep 30 & done; wait' 2>/dev/null | hdr_id)
# bash gives up when its fork retries run out (about 15 s here) and the job
# then ends by itself, so it is stopped as soon as it has hit the limit.
peak=0 t0=$SECONDS
while ((SECONDS - t0 < 30)); do
	n=$(pgrep -c -x -f 'sleep 30' || true)
	((n > peak)) && peak=$n
	((peak >= 50 && SECONDS - t0 >= 2)) && break
	sleep 0.2
done
echo "  fork loop under --max-pids=64: at most $peak 'sleep 30' processes at once"
show rnx status "$id"
t0=$SECONDS
show rnx stop "$id"
wait_ended "$id" 30
echo "  ended $((SECONDS - t0)) s after rnx stop"
left=$(pgrep -c -x -f 'sleep 30' || true)
show rnx status "$id"
if ((peak >= 40 && peak <= 64)) && [[ $(field "$id" Status) == STOPPED ]] && ((left == 0)); then
	pass "--max-pids=64: fork loop peaked at $peak (<= 64), stopped, nothing left"
else
	fail "--max-pids=64" "peak $peak (want 40..64), status '$(field "$id" Status)', $left sleeps left"
fi

out=$(rnx run --max-iobps=10485760 dd if=/dev/zero of=/work/f bs=1M count=50 oflag=direct 2>&1)
show echo "$out"
secs=$(sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p' <<<"$out")
show findmnt -no SOURCE,FSTYPE -T /var/lib/joblet
if [[ -n $secs ]] && awk -v s="$secs" 'BEGIN { exit !(s >= 4) }'; then
	pass "--max-iobps=10 MiB/s: 50 MB oflag=direct took $secs s (>= 4 s)"
else
	fail "--max-iobps=10 MiB/s" "50 MB oflag=direct took '${secs:-?}' s (want >= 4 s)"
fi

echo "== networks"
srv=$(rnx run --detach --name=vmsrv timeout 30 busybox nc -l -p 7000 2>/dev/null | hdr_id)
sleep 2
show rnx status "$srv"
out=$(rnx run bash -c 'getent hosts vmsrv && echo hello-from-peer > /dev/tcp/vmsrv/7000 && echo sent' 2>&1)
show echo "$out"
wait_ended "$srv" 30
show rnx log --no-follow "$srv"
if grep -q '^sent$' <<<"$out" && rnx log --no-follow "$srv" 2>/dev/null | grep -q hello-from-peer; then
	pass "two jobs on the bridge reach each other by --name"
else
	fail "bridge: job to job by name" "client: $(tail -2 <<<"$out"); server log: $(rnx log --no-follow "$srv" 2>&1 | tail -2)"
fi

out=$(rnx run --network=none sh -c "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '" 2>/dev/null)
show echo "$out"
[[ $out == lo ]] && pass "--network=none has only lo" || fail "--network=none" "interfaces: $(echo $out)"

show rnx network create vmtest --cidr=10.77.0.0/24
show rnx network list
show rnx run --network=vmtest ip -4 -o addr show
ok=1
rnx network list 2>/dev/null | grep -q vmtest || ok=0
rnx run --network=vmtest ip -4 -o addr show 2>/dev/null | grep -q 'inet 10\.77\.0\.' || ok=0
show rnx network remove vmtest
rnx network list 2>/dev/null | grep -q vmtest && ok=0
((ok)) && pass "custom network create, job on it, list, remove" || fail "custom network" "see above"

echo "== scheduled job"
id=$(rnx run --schedule=3s echo scheduled-output 2>/dev/null | hdr_id)
first=$(field "$id" Status)
show rnx status "$id"
wait_ended "$id" 30
show rnx status "$id"
out=$(rnx log "$id" 2>/dev/null)
if [[ $first == SCHEDULED && $(field "$id" Status) == COMPLETED && $out == scheduled-output ]]; then
	pass "--schedule=3s: SCHEDULED, then COMPLETED with its output"
else
	fail "--schedule=3s" "first '$first', then '$(field "$id" Status)', output '$out'"
fi

echo "== systemctl restart of each helper with a job printing"
want=$(seq -f 'line-%g' 60)
for s in logd netd scheduler gateway isolator; do
	id=$(rnx run --detach bash -c 'for i in $(seq 60); do echo line-$i; sleep 0.1; done; exit 7' 2>/dev/null | hdr_id)
	sleep 1.5
	systemctl restart joblet-$s.service
	wait_active joblet-$s.service
	wait_ended "$id" 90
	got=$(timeout 30 rnx log "$id" 2>/dev/null)
	code=$(field "$id" 'Exit Code')
	if [[ -n $id && $got == "$want" && $code == 7 ]]; then
		pass "restart joblet-$s with job $id running: 60 lines once and in order, exit code 7"
	else
		show rnx status "$id"
		fail "restart joblet-$s" "job '$id': $(grep -c . <<<"$got") lines (want 60 in order; diff: $(diff <(echo "$want") <(echo "$got") | head -4 | tr '\n' ' ')), exit code '$code'"
		show systemctl status --no-pager --lines=0 "joblet-$s.service"
		show journalctl --no-pager -o short-monotonic -u "joblet-$s" -n 15
		show cat /sys/fs/cgroup/system.slice/joblet-isolator.service/cgroup.subtree_control
	fi
done

echo "== isolator restart with a job running"
# After a failed restart above, systemd's start limit leaves the isolator
# and its socket failed: start afresh so this section stands on its own.
systemctl reset-failed joblet-isolator.service joblet-isolator.socket 2>/dev/null
systemctl start joblet-isolator.socket
long=""
long=$(rnx run --detach sleep 600 2>/dev/null | sed -n 's/^ID: //p')
sleep 2
show rnx status "$long"
show systemd-cgls --no-pager -u joblet-isolator.service
before=$(pgrep -x sleep | head -1)
show systemctl restart joblet-isolator.service
wait_active joblet-isolator.service || show journalctl --no-pager -o short-monotonic -u joblet-isolator -n 15
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

echo "== job scopes (systemd cgroup driver)"
# Each job runs in a transient scope joblet-<id>.scope in joblet.slice, its
# shim in the leaf <scope>/shim and the job in <scope>/job with its limits;
# the isolator's own cgroup never gets controllers for children, which is
# what lets systemd put a restarted isolator back into it.
id=$(rnx run --detach --max-pids=77 --max-memory=96 sleep 600 2>/dev/null | hdr_id)
sleep 2
jpid=$(pgrep -n -x -f 'sleep 600' || true)
show systemd-cgls --no-pager -u joblet.slice
show systemctl status --no-pager --lines=0 "joblet-$id.scope"
show cat /proc/"${jpid:-0}"/cgroup
scope=/sys/fs/cgroup/joblet.slice/joblet-$id.scope
if [[ -n $jpid && $(cat /proc/"$jpid"/cgroup) == "0::/joblet.slice/joblet-$id.scope/job" ]] &&
	systemctl is-active --quiet "joblet-$id.scope" &&
	[[ $(systemctl show -p Delegate --value "joblet-$id.scope") == yes ]]; then
	pass "job $id runs in $scope/job (an active scope with Delegate=yes)"
else
	fail "job scope" "pid '${jpid:-none}' in '$(cat /proc/"${jpid:-0}"/cgroup 2>&1)'"
fi
shim=$(cat "$scope"/shim/cgroup.procs 2>/dev/null)
show ps -o pid=,cmd= -p "${shim:-0}"
[[ -n $shim && $(ps -o comm= -p "$shim") == joblet-shim ]] && pass "the job's shim is in $scope/shim" ||
	fail "shim in the scope" "shim leaf holds '$shim'"
# Once the command runs, the job's PID 1 (the command's parent) is the packaged reaper, not the Go init.
init=$(ps -o ppid= -p "${jpid:-0}" | tr -d ' ')
show ps -o pid=,comm=,rss= -p "${init:-0}"
if [[ -n $init && $(ps -o comm= -p "$init") == joblet-reaper ]]; then
	pass "the job's PID 1 is the reaper (/usr/lib/joblet/joblet-sandbox-reaper)"
else
	fail "reaper as the job's PID 1" "the command's parent '${init:-none}' is '$(ps -o comm= -p "${init:-0}" 2>&1)'; $(journalctl -u joblet-isolator --no-pager -o cat | grep -i reaper | tail -2)"
fi
show grep . "$scope"/job/pids.max "$scope"/job/memory.max "$scope"/job/memory.oom.group
if [[ $(cat "$scope"/job/pids.max) == 77 && $(cat "$scope"/job/memory.max) == $((96 << 20)) ]]; then
	pass "limits in the scope: pids.max 77, memory.max 96 MB"
else
	fail "limits in the scope" "pids.max '$(cat "$scope"/job/pids.max 2>&1)', memory.max '$(cat "$scope"/job/memory.max 2>&1)'"
fi
own=/sys/fs/cgroup/system.slice/joblet-isolator.service
show grep -H . "$own"/cgroup.subtree_control "$own"/cgroup.procs
if [[ -z $(cat "$own"/cgroup.subtree_control) && -z $(find "$own" -mindepth 1 -type d) ]]; then
	pass "the isolator's cgroup has no controllers for children and no sub-cgroups"
else
	fail "isolator cgroup untouched" "subtree_control '$(cat "$own"/cgroup.subtree_control)', dirs: $(find "$own" -mindepth 1 -type d | tr '\n' ' ')"
fi
rnx stop "$id" >/dev/null 2>&1
wait_ended "$id" 60
show rnx status "$id"
sleep 1
left=$(systemctl list-units --all --plain --no-legend 'joblet-*.scope' | awk '{ print $1 }')
dirs=$(find /sys/fs/cgroup/joblet.slice -mindepth 1 -maxdepth 1 -name '*.scope' 2>/dev/null)
show systemctl list-units --all --no-pager 'joblet-*.scope'
if [[ $(field "$id" Status) == STOPPED && -z $left && -z $dirs ]] && ! pgrep -x -f 'sleep 600' >/dev/null; then
	pass "every job ended: no joblet-*.scope unit or cgroup is left"
else
	fail "no scope left" "status '$(field "$id" Status)', units '$left', cgroups '$dirs'"
fi

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
