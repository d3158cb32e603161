# tests/vm/gigantic_server_check.sh: groove-volumed serving a `gigantic`
# pool (1 GiB pages) end to end, run by busybox sh inside the VM of
# tests/vm/run_in_vm with groove-volumed, groovectl and data_plane_example
# copied in (CTest: groove_volumed_gigantic_in_vm). It owns the VM: it
# reserves the pages and mounts hugetlbfs itself.
#
# What it checks, each with the kernel's own page counts (3 pages):
#   - each AddVolume takes one 1 GiB page; Inspect reports the gigantic
#     backing and 1 GiB pages;
#   - a data-plane process (data_plane_example) joins the pool, acquires
#     two volumes, writes and reads back 1 MiB of each;
#   - an add with no page left fails RESOURCE_EXHAUSTED, names
#     nr_hugepages, and changes nothing;
#   - the pool, on a hugetlbfs mount, survives a restart of the server
#     (SIGTERM, start again): its volumes and their info come back;
#   - a RemoveVolume beside an add that is allocating (held there by the
#     server's test-only stall FIFO) returns at once and leaves its page to
#     that add, which gives it back when its own allocation ends (the
#     store gate, docs/ARCHITECTURE.md section 9): the reply reports the
#     1 GiB as releasing, and the kernel gets the page back only then;
#   - RemoveVolume gives every page back to the kernel.
# Prints "gigantic_server_check: PASS" and exits 0, or names the first
# check that failed and exits 1.

set -u
sysfs=/sys/kernel/mm/hugepages/hugepages-1048576kB
addr=127.0.0.1:50051

fail() {
  echo "gigantic_server_check: FAIL: $*"
  for log in /tmp/server-*.log; do
    [ -f "${log}" ] && { echo "--- ${log}"; cat "${log}"; }
  done
  exit 1
}
free_pages() { cat "${sysfs}/free_hugepages"; }
expect_free() {
  [ "$(free_pages)" = "$1" ] ||
    fail "$2: free 1 GiB pages $(free_pages), expected $1"
}
# json_field NAME FILE: the value of field NAME in groovectl's JSON
# output (proto field names; 64-bit numbers are strings in proto3 JSON).
json_field() {
  sed -n "s/^[^\"]*\(\"[^\"]*\"[^\"]*\)*\"$1\":\"\{0,1\}\([^\",}]*\).*/\2/p" \
    "$2" | head -n 1
}

# start_server N [FLAG...]: the Nth start of the server, logging to
# server-N.log.
start_server() {
  log="/tmp/server-$1.log"
  shift
  groove-volumed --data_dir=/tmp/groove --listen="${addr}" \
    --metrics_listen=127.0.0.1:0 \
    --pool=name=big,backing=gigantic,volume_size=1GiB,max_volumes=4 "$@" \
    2>"${log}" &
  server_pid=$!
  # The server logs `event=listening` once it serves; polled, with a
  # bound, because an emulated CPU starts it in seconds.
  for _ in $(seq 1 600); do
    grep -q 'event=listening' "${log}" && return 0
    kill -0 "${server_pid}" 2>/dev/null || fail "groove-volumed exited"
    sleep 0.2
  done
  fail "groove-volumed did not start within 120 s"
}
stop_server() {
  kill -TERM "${server_pid}"
  wait "${server_pid}" || fail "groove-volumed exited non-zero on SIGTERM"
}

[ -d "${sysfs}" ] || fail "no 1 GiB page size in this VM (pdpe1gb?)"
# run_in_vm reserves them at boot (hugepages=3); this only checks.
echo 3 > "${sysfs}/nr_hugepages"
expect_free 3 "reserving 3 pages through ${sysfs}"
mkdir -p /mnt/hugepages-1G /tmp/groove
mount -t hugetlbfs -o pagesize=1G none /mnt/hugepages-1G ||
  fail "mount hugetlbfs pagesize=1G"

start_server 1
groovectl --addr "${addr}" --timeout 120s add big 1 --info first \
  > /tmp/add1.txt 2>&1 || fail "first add: $(cat /tmp/add1.txt)"
groovectl --addr "${addr}" --timeout 120s add big 1 --info second \
  > /tmp/add2.txt 2>&1 || fail "second add: $(cat /tmp/add2.txt)"
expect_free 1 "after two adds"
groovectl --addr "${addr}" --output json inspect big > /tmp/inspect.json ||
  fail "inspect"
[ "$(json_field backing_in_use /tmp/inspect.json)" = BACKING_GIGANTIC ] ||
  fail "backing in use: $(cat /tmp/inspect.json)"
[ "$(json_field page_size_bytes /tmp/inspect.json)" = 1073741824 ] ||
  fail "page size: $(cat /tmp/inspect.json)"
[ "$(json_field volumes_mapped /tmp/inspect.json)" = 2 ] ||
  fail "volumes mapped after two adds: $(cat /tmp/inspect.json)"

# A data-plane process joins the pool (1 GiB pages in its mapping too),
# acquires both volumes, writes and reads back 1 MiB of each, releases.
data_plane_example --data-dir /tmp/groove --pool big --hold 2 \
  --bytes 1048576 --acquires 10 > /tmp/data_plane.txt 2>&1 ||
  fail "data plane: $(cat /tmp/data_plane.txt)"
grep -q 'mismatches=0 errors=0' /tmp/data_plane.txt ||
  fail "data plane: $(cat /tmp/data_plane.txt)"

groovectl --addr "${addr}" --timeout 120s add big 1 --info third \
  > /tmp/add3.txt 2>&1 || fail "third add: $(cat /tmp/add3.txt)"
expect_free 0 "after three adds"

# No page left: the fourth add must fail whole, with the reason.
if groovectl --addr "${addr}" --timeout 120s add big 1 > /tmp/add4.txt 2>&1
then
  fail "an add with no free 1 GiB page succeeded"
fi
grep -q 'RESOURCE_EXHAUSTED' /tmp/add4.txt ||
  fail "fourth add: expected RESOURCE_EXHAUSTED: $(cat /tmp/add4.txt)"
grep -q 'nr_hugepages' /tmp/add4.txt ||
  fail "fourth add: the message should name nr_hugepages: $(cat /tmp/add4.txt)"
expect_free 0 "after the refused add"
groovectl --addr "${addr}" --output json inspect big > /tmp/inspect.json
[ "$(json_field volumes_mapped /tmp/inspect.json)" = 3 ] ||
  fail "the refused add changed the pool: $(cat /tmp/inspect.json)"

# The pool lives on the hugetlbfs mount: it outlives the server.
stop_server
ls /mnt/hugepages-1G | grep -q 'big' ||
  fail "no store file of pool big on the hugetlbfs mount"
# This time every allocation first waits for a byte on /tmp/stall.
mkfifo /tmp/stall
start_server 2 --testonly_stall_add_fifo=/tmp/stall
groovectl --addr "${addr}" --output json inspect big --volumes \
  > /tmp/inspect.json || fail "inspect after restart"
[ "$(json_field volumes_mapped /tmp/inspect.json)" = 3 ] ||
  fail "volumes after restart: $(cat /tmp/inspect.json)"
# info is bytes: base64 in JSON ("first", "second", "third").
grep -q '"Zmlyc3Q="' /tmp/inspect.json &&
  grep -q '"c2Vjb25k"' /tmp/inspect.json &&
  grep -q '"dGhpcmQ="' /tmp/inspect.json ||
  fail "the volumes' info after restart: $(cat /tmp/inspect.json)"
expect_free 0 "after the restart"

# A remove with no allocation in progress gives its page back at once.
groovectl --addr "${addr}" remove big 1 > /tmp/remove1.txt 2>&1 ||
  fail "remove: $(cat /tmp/remove1.txt)"
expect_free 1 "after a remove with no add in progress"
# An add held inside its allocation; a remove beside it.
groovectl --addr "${addr}" --timeout 120s add big 1 --info fourth \
  > /tmp/add5.txt 2>&1 &
held_add=$!
for _ in $(seq 1 600); do
  grep -q 'event=testonly_stall_add_wait' "${log}" && break
  sleep 0.2
done
grep -q 'event=testonly_stall_add_wait' "${log}" ||
  fail "the add did not reach its allocation within 120 s"
groovectl --addr "${addr}" --output json remove big 1 > /tmp/remove2.json ||
  fail "remove beside an allocation: $(cat /tmp/remove2.json)"
[ "$(json_field releasing_bytes /tmp/remove2.json)" = 1073741824 ] ||
  fail "the remove should leave its 1 GiB to the add: $(cat /tmp/remove2.json)"
expect_free 1 "the removed page is the add's to give back, not yet given"
printf x > /tmp/stall
wait "${held_add}" || fail "the held add: $(cat /tmp/add5.txt)"
# The add took the free page, then gave back the removed volume's.
expect_free 1 "after the held add"
groovectl --addr "${addr}" --output json inspect big > /tmp/inspect.json
[ "$(json_field releasing_bytes /tmp/inspect.json)" = 0 ] &&
  [ "$(json_field volumes_mapped /tmp/inspect.json)" = 2 ] ||
  fail "after the held add: $(cat /tmp/inspect.json)"

groovectl --addr "${addr}" remove big 2 > /tmp/remove.txt 2>&1 ||
  fail "remove: $(cat /tmp/remove.txt)"
expect_free 3 "after removing every volume"
stop_server
echo "gigantic_server_check: PASS"
