#!/usr/bin/env bash
# Runs every Go native fuzz target of the module (each `func FuzzX(f *testing.F)`
# in a _test.go file), one after another, for FUZZTIME each (default 10m).
#   FUZZTIME=30m ./hack/fuzz.sh          longer runs
#   FUZZ_RUN=DataPort ./hack/fuzz.sh     only targets whose name matches (grep -E)
#   FUZZ_PARALLEL=2 ./hack/fuzz.sh       fuzz workers per target (default 1: a shared machine)
# A crash stops the run; go test has written the input to
# <package>/testdata/fuzz/<target>/: fix the bug and commit that file — plain
# `go test` replays it from then on as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZ_RUN=${FUZZ_RUN:-.}

mapfile -t targets < <(grep -rlE --include='*_test.go' --exclude-dir=.cache --exclude-dir=testdata '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | sed 's|^\./||' | while read -r file; do
		sed -n -E 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' "$file" | while read -r name; do
			echo "./$(dirname "$file") $name"
		done
	done | sort -u | grep -E "$FUZZ_RUN" || true)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches FUZZ_RUN=$FUZZ_RUN" >&2
	exit 1
fi

summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== fuzz $pkg $name for $FUZZTIME"
	start=$(date +%s)
	corpus="$pkg/testdata/fuzz/$name"
	before=$(ls "$corpus" 2>/dev/null || true)
	if ! go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" "$pkg" 2>&1 |
		grep -v -E '^[IWE][0-9]{4} ' | tee "$log"; then
		# Go before 1.27 can end a run whose -fuzztime expired while a
		# worker was busy (a loaded machine) with a bare "context deadline
		# exceeded" failure: golang/go#75804. That is no finding; anything
		# else, or any input written, is.
		if [ "$(ls "$corpus" 2>/dev/null || true)" = "$before" ] && ! grep -q 'Failing input written' "$log" &&
			grep -A1 -E '^--- FAIL: '"$name"' ' "$log" | tail -n1 | grep -qx '    context deadline exceeded'; then
			echo "fuzz: $name in $pkg: the run ended in Go's fuzz deadline race (golang/go#75804, fixed in Go 1.27), no input written: not a finding" >&2
			summary+=("$(printf '%-22s %-20s %5ss (deadline race at the end, golang/go#75804)' "$name" "$pkg" $(($(date +%s) - start)))")
			continue
		fi
		echo "fuzz: $name in $pkg FAILED; the input is in $corpus/ (fix the bug, commit the file)" >&2
		exit 1
	fi
	summary+=("$(printf '%-22s %-20s %5ss' "$name" "$pkg" $(($(date +%s) - start)))")
done
echo "== fuzz: ${#targets[@]} targets passed"
printf '%s\n' "${summary[@]}"
