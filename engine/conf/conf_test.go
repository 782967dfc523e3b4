package conf

import (
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

func TestParseSizeAndDuration(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "64MB": 64 << 20, "1GiB": 1 << 30, "2g": 2 << 30, "1.5KB": 1536} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]time.Duration{"30000": 30 * time.Second, "5min": 5 * time.Minute, "10s": 10 * time.Second} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
