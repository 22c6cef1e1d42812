#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and writes a report.
#
#   scripts/fuzz.sh [TARGET]...
#
#   TARGET                  one or more of the targets below (default: all of them)
#   FUZZ_SECONDS=60         how long each target runs
#   FUZZ_REPORT=FILE        where the report goes (default: target/fuzz-report.md)
#   FUZZ_SANITIZER=address  address (default), none, or another cargo-fuzz sanitizer
#
# Installs cargo-fuzz into target/tools if no cargo-fuzz is on PATH. The machine's toolchain is
# stable; cargo-fuzz needs nightly-only flags (-Zsanitizer, sancov), which stable rustc accepts
# with RUSTC_BOOTSTRAP=1, so that is set here and nowhere else.
#
# Seed corpora are made from tests/fixtures and examples/ by fuzz/make_seeds.py into
# fuzz/corpus/<target>/ (git-ignored; what a run adds is kept for the next). A crash, timeout or
# out-of-memory input is minimised with `cargo fuzz tmin` and left in fuzz/artifacts/<target>/;
# turn it into a regression test in tests/ and fix the cause. Exit status: 0 when every target
# ran clean, 1 when any found something, 2 on a usage or set-up error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

all_targets=(
	admission_review
	admission_review_inventory
	workload_view
	image_reference
	kafka_parsers
	scan_yaml
)
cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-60}
report=${FUZZ_REPORT:-$root/target/fuzz-report.md}
sanitizer=${FUZZ_SANITIZER:-address}
logs=$root/target/fuzz-logs

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

targets=()
for arg in "$@"; do
	case "$arg" in
	-h | --help)
		usage
		exit 0
		;;
	*)
		if [[ " ${all_targets[*]} " != *" $arg "* ]]; then
			echo "fuzz: unknown target '$arg' (targets: ${all_targets[*]})" >&2
			exit 2
		fi
		targets+=("$arg")
		;;
	esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || {
	echo "fuzz: FUZZ_SECONDS must be a positive whole number, not '$seconds'" >&2
	exit 2
}

# Per target: libFuzzer dictionary and largest input.
dict_of() {
	case "$1" in
	admission_review | admission_review_inventory | workload_view) echo admission ;;
	image_reference) echo image ;;
	kafka_parsers) echo kafka ;;
	scan_yaml) echo yaml ;;
	esac
}
max_len_of() {
	case "$1" in
	image_reference) echo 1024 ;;
	kafka_parsers) echo 8192 ;;
	*) echo 65536 ;;
	esac
}

# cargo-fuzz: PATH first, then target/tools, else install it there.
export PATH="$root/target/tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz $cargo_fuzz_version into target/tools" >&2
	cargo install --locked --root "$root/target/tools" --version "$cargo_fuzz_version" cargo-fuzz
fi
if ! rustc --version | grep -q nightly; then
	export RUSTC_BOOTSTRAP=1
fi

mkdir -p "$logs" "$(dirname "$report")"
if command -v python3 >/dev/null 2>&1; then
	python3 fuzz/make_seeds.py fuzz/corpus
else
	# Without Python: the raw fixtures, for the targets that take whole files.
	echo "fuzz: python3 not found; seeding from raw fixture files only" >&2
	for t in admission_review admission_review_inventory scan_yaml; do
		mkdir -p "fuzz/corpus/$t"
		find tests/fixtures examples -type f \( -name '*.json' -o -name '*.yaml' \) -size -256k \
			-exec cp {} "fuzz/corpus/$t/" \;
	done
	for t in workload_view image_reference kafka_parsers; do mkdir -p "fuzz/corpus/$t"; done
fi

build_flags=(--release --debug-assertions)
if [[ "$sanitizer" == none ]]; then
	build_flags+=(--sanitizer none)
else
	build_flags+=(--sanitizer "$sanitizer")
fi
echo "fuzz: building ${#targets[@]} target(s) (sanitizer: $sanitizer)" >&2
if ((${#targets[@]} == ${#all_targets[@]})); then
	cargo fuzz build "${build_flags[@]}"
else
	for t in "${targets[@]}"; do
		cargo fuzz build "${build_flags[@]}" "$t"
	done
fi

# The value of `name: N` in the last line of a log that has it.
last_stat() {
	grep -o "$2: *[0-9]*" "$1" | tail -n 1 | grep -o '[0-9]*$' || true
}
final_stat() {
	grep "^stat::$2:" "$1" | tail -n 1 | awk '{print $2}' || true
}

found=0
{
	echo "# applyguard fuzz report"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), ${seconds} s per target, sanitizer $sanitizer, $(rustc --version)."
	echo "\`cov\` is libFuzzer's count of covered code edges, \`ft\` its coverage features; corpus is"
	echo "the number of inputs kept (seeds plus what the run added)."
	echo
	echo "| target | result | executions | exec/s | cov | ft | corpus | new units | peak RSS MB |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$report"
for t in "${targets[@]}"; do
	log=$logs/$t.log
	echo "fuzz: running $t for ${seconds}s (log: ${log#"$root"/})" >&2
	mkdir -p "fuzz/artifacts/$t"
	status=0
	cargo fuzz run "${build_flags[@]}" "$t" "fuzz/corpus/$t" -- \
		-max_total_time="$seconds" \
		-dict="fuzz/dicts/$(dict_of "$t").dict" \
		-max_len="$(max_len_of "$t")" \
		-timeout=10 \
		-rss_limit_mb=2048 \
		-malloc_limit_mb=1024 \
		-print_final_stats=1 \
		>"$log" 2>&1 || status=$?
	result=clean
	if ((status != 0)); then
		found=1
		artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | awk '{print $NF}' || true)
		kind=$(grep -o "ERROR: libFuzzer: [a-z-]*\|panicked at [^:]*:[0-9]*" "$log" | head -n 1 || true)
		result="FOUND: ${kind:-exit $status}"
		if [[ -n "$artifact" && -f "$artifact" ]]; then
			echo "fuzz: $t found an input: $artifact; minimising" >&2
			cargo fuzz tmin "${build_flags[@]}" -r 2000 "$t" "$artifact" >"$logs/$t.tmin.log" 2>&1 || true
			minimised=$(grep -o "fuzz/artifacts/$t/minimized-from-[0-9a-f]*" "$logs/$t.tmin.log" | tail -n 1 || true)
			result="$result; input ${minimised:-$artifact}"
		fi
		tail -n 40 "$log" >&2
	fi
	execs=$(final_stat "$log" number_of_executed_units)
	rate=$(final_stat "$log" average_exec_per_sec)
	new_units=$(final_stat "$log" new_units_added)
	rss=$(final_stat "$log" peak_rss_mb)
	cov=$(last_stat "$log" cov)
	ft=$(last_stat "$log" ft)
	corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
	echo "| $t | $result | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corpus | ${new_units:-?} | ${rss:-?} |" >>"$report"
done
echo >>"$report"
cat "$report"
exit "$found"
