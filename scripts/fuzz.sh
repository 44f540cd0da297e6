#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (a separate package, so `make test` and `make run` never
# build them) with -sanitize=fuzzer,address and runs each one after the other for FUZZ_SECONDS on its
# seed corpus (fuzz/corpus/<target>/, read only: new inputs go to fuzz/.build/corpus/<target>/).
# One process at a time (no -jobs/-workers): the machine has two shared cores.
# A crash, sanitizer report, timeout or memory blow-up leaves its input in fuzz/.build/artifacts/
# and makes the run fail. Usage: [FUZZ_SECONDS=60] [FUZZ_TARGETS="fuzz-jwt ..."] scripts/fuzz.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT/fuzz"

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(cd corpus && echo fuzz-*)}

mkdir -p .build/artifacts
build=(swift build -c debug -Xswiftc -sanitize=fuzzer,address)
# The gold linker warns once per ASan symbol it cannot export: keep the log, show it only on failure.
if ! "${build[@]}" >.build/build.log 2>&1; then
  grep -v "Cannot export local symbol" .build/build.log >&2
  exit 1
fi
bin=$("${build[@]}" --show-bin-path)
status=0
summary=()
for target in $targets; do
  work=.build/corpus/$target
  mkdir -p "$work"
  log=.build/$target.log
  echo "== $target: ${seconds}s"
  # -timeout: one input taking over 10 s is a finding; -rss_limit_mb: so is growing past 2 GiB.
  if "$bin/$target" "$work" "corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix=".build/artifacts/$target-" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see fuzz/$log and fuzz/.build/artifacts/)"
    status=1
    grep -E "ERROR|Fatal error|panic|deadly|SUMMARY" "$log" | head -5 || true
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  summary+=("$(printf '%-18s %10s runs %7s/s  cov %5s  %s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$result")")
done
echo
echo "fuzz summary (${seconds}s each):"
printf '  %s\n' "${summary[@]}"
exit $status
