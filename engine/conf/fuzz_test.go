package conf

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Seeds are the values the README, the chart and the tests use, plus the
// ones issue 13 found accepted (NaN, Inf, 1e300).
var sizeSeeds = []string{"1024", "64MB", "128MB", "1GiB", "2g", "1.5KB", "512MiB", "100GB", "0", "200MB",
	"NaN", "Inf", "-Inf", "1e300", "-1", "9223372036854775807", "9223372036854775808", "0x1p10", " 1 KB "}

// FuzzParseSize also covers ParseDuration (the other value parser of
// properties and flags). Sizes: never a panic; never negative; a refusal
// says what is wrong; a size printed as bytes (or KiB) parses back to
// itself. Durations: never negative; whole milliseconds round trip.
func FuzzParseSize(f *testing.F) {
	for _, s := range append(sizeSeeds, "30000", "5min", "10s", "1h", "30sec", "-5s", "9223372036855", "1h2m3.5s") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkDuration(t, s)
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			if !strings.Contains(err.Error(), "not a size") {
				t.Fatalf("ParseSize(%q): error %q does not say what is wrong", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		back, err := ParseSize(strconv.FormatInt(n, 10))
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, but %d parses as %d, %v", s, n, n, back, err)
		}
		if back, err := ParseSize(strconv.FormatInt(n, 10) + "B"); err != nil || back != n {
			t.Fatalf("%dB parses as %d, %v", n, back, err)
		}
		if n <= math.MaxInt64>>10 && n > 0 {
			if k, err := ParseSize(strconv.FormatInt(n, 10) + "KiB"); err != nil || k != n<<10 {
				t.Fatalf("%dKiB parses as %d, %v; want %d", n, k, err, n<<10)
			}
		}
	})
}

func checkDuration(t *testing.T, s string) {
	d, err := ParseDuration(s)
	if err != nil {
		return
	}
	if d < 0 {
		t.Fatalf("ParseDuration(%q) = %v < 0", s, d)
	}
	if d%1e6 == 0 {
		ms := strconv.FormatInt(d.Milliseconds(), 10)
		if back, err := ParseDuration(ms); err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, but %s ms parses as %v, %v", s, d, ms, back, err)
		}
	}
}

// FuzzParse: properties text never panics; an error names the file and line;
// every key kept is a known canonical key whose value passes its check and
// reads back through the typed getters without surprise; and the kept
// settings written back as properties text parse to the same settings.
func FuzzParse(f *testing.F) {
	f.Add(`# comment
alluxio.master.hostname=master-0
alcove.user.file.writetype.default = CACHE_THROUGH
alluxio.user.block.size.bytes.default: 128MB
alluxio.worker.network.async.cache.manager.threads.max=4
alluxio.security.authentication.type=NOSASL
`)
	f.Add("alluxio.master.rpc.port=19998\nalluxio.worker.ramdisk.size 1GB\n! bang comment\nalluxio.user.streaming.data.read.timeout=5min\n")
	f.Add("alluxio.job.worker.bandwidth=NaN\n")
	f.Add("alluxio.user.file.replication.min=-1\nalluxio.master.worker.timeout=-5s\n")
	f.Add("justakey\n")
	f.Add("alluxio.master.hostname=a=b:c\r\nalcove.alcove.x=1\n\x00=\xff")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse("site", text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "site:") {
				t.Fatalf("error %q does not name the file and line", err)
			}
			return
		}
		var out strings.Builder
		for _, k := range p.Keys() {
			check, ok := known[k]
			if !ok {
				t.Fatalf("kept unknown key %q", k)
			}
			v, _ := p.Get(k)
			if err := check(v); err != nil {
				t.Fatalf("kept %s=%q that fails its check: %v", k, v, err)
			}
			if n := p.Size(k, -1); n < 0 && isCheck(check, size) {
				t.Fatalf("size %s=%q reads as %d", k, v, n)
			}
			if d := p.Duration(k, -1); d < 0 && isCheck(check, duration) {
				t.Fatalf("duration %s=%q reads as %v", k, v, d)
			}
			out.WriteString(k + "=" + v + "\n")
		}
		q, err := Parse("again", out.String())
		if err != nil {
			t.Fatalf("kept settings do not parse again: %v\n%s", err, out.String())
		}
		for _, k := range q.Keys() {
			a, _ := p.Get(k)
			b, _ := q.Get(k)
			if a != b {
				t.Fatalf("%s = %q, then %q after writing it back", k, a, b)
			}
		}
	})
}

// isCheck reports whether two checks are the same function.
func isCheck(a, b func(string) error) bool {
	return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}
