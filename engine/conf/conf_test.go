package conf

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	text := `
# comment
alluxio.master.hostname=master-0
alcove.user.file.writetype.default = CACHE_THROUGH
alluxio.user.block.size.bytes.default: 128MB
alluxio.worker.network.async.cache.manager.threads.max=4
alluxio.security.authentication.type=NOSASL
`
	p, err := Parse("site", text)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.String(MasterHostname, ""); got != "master-0" {
		t.Errorf("hostname = %q", got)
	}
	if got := p.String(UserWriteType, ""); got != "CACHE_THROUGH" {
		t.Errorf("write type via alcove. prefix = %q", got)
	}
	if got := p.Size(UserBlockSize, 0); got != 128<<20 {
		t.Errorf("block size = %d", got)
	}
	if got := p.Int(WorkerAsyncCacheMax, 0); got != 4 {
		t.Errorf("threads = %d", got)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "alluxio.security.authentication.type") {
		t.Errorf("warnings = %v, want one naming the unknown key", p.Warnings)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"alluxio.user.file.writetype.default=FAST", "unknown write type"},
		{"alluxio.master.rpc.port=99999", "not a port"},
		{"alluxio.user.block.size.bytes.default=big", "not a size"},
		{"justakey", "not key=value"},
	} {
		_, err := Parse("site", tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // substring of the error; "" means valid
	}{
		{"1024", 1024, ""},
		{"64MB", 64 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"2g", 2 << 30, ""},
		{"1.5KB", 1536, ""},
		{" 512 mb ", 512 << 20, ""},
		{"0", 0, ""},
		{"-0", 0, ""},
		{"0.5", 0, ""}, // a fraction of a byte is dropped, as in Alluxio
		{"1e3", 1000, ""},
		{"1e-400", 0, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775807B", math.MaxInt64, ""},
		{"8388607TB", 8388607 << 40, ""},
		{"", 0, "not a size"},
		{"MB", 0, "not a size"},
		{"big", 0, "not a size"},
		{"NaN", 0, "not a finite number"},
		{"nanKB", 0, "not a finite number"},
		{"Inf", 0, "not a finite number"},
		{"+Infinity", 0, "not a finite number"},
		{"-Inf", 0, "negative"},
		{"-1", 0, "negative"},
		{"-1.5GB", 0, "negative"},
		{"-1e400", 0, "negative"},
		{"1e300", 0, "exceeds"},
		{"1e400", 0, "exceeds"},
		{"9223372036854775808", 0, "exceeds"},
		{"8388608TB", 0, "exceeds"},
		{"8e18", 8e18, ""},
		{"9.3e18", 0, "exceeds"},
		{"8EB", 0, "not a size"}, // no exabyte suffix
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"30000", 30 * time.Second, ""},
		{"5min", 5 * time.Minute, ""},
		{"10s", 10 * time.Second, ""},
		{"10sec", 10 * time.Second, ""},
		{"0", 0, ""},
		{"9223372036854", 9223372036854 * time.Millisecond, ""},
		{"9223372036855", 0, "exceed"},
		{"99999999999999999999", 0, "exceed"},
		{"-1", 0, "negative"},
		{"-99999999999999999999", 0, "negative"},
		{"-5s", 0, "negative"},
		{"5 parsecs", 0, "not a duration"},
		{"", 0, "not a duration"},
	} {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseDuration(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}
