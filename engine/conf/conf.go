// Package conf reads Alcove's properties file (conf/alcove-site.properties).
// It accepts the alluxio.* keys Alcove implements, under their Alluxio names or
// with the alcove.* prefix, and warns about every key it does not know —
// never silently ignoring a setting a user believes is in effect.
package conf

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/alcove-io/alcove/engine/meta"
)

// Keys Alcove implements (canonical alluxio.* spelling).
const (
	MasterHostname      = "alluxio.master.hostname"
	MasterRPCPort       = "alluxio.master.rpc.port"
	MasterWebPort       = "alluxio.master.web.port"
	MasterJournalFolder = "alluxio.master.journal.folder"
	MasterRootUFS       = "alluxio.master.mount.table.root.ufs"
	// MasterRootUFSOption prefixes the root mount's options
	// (alluxio.master.mount.table.root.option.alluxio.underfs.s3.endpoint=...).
	MasterRootUFSOption = "alluxio.master.mount.table.root.option."
	MasterWorkerTimeout = "alluxio.master.worker.timeout"
	// MasterRPCAddresses lists every master's RPC host:port (HA); clients,
	// workers, FUSE, CSI and the extender follow the leader among them.
	MasterRPCAddresses = "alluxio.master.rpc.addresses"
	// MasterJournalAddresses lists the journal group's members as
	// host:port (Alluxio's form, the address is the member id) or id=host:port.
	MasterJournalAddresses       = "alluxio.master.embedded.journal.addresses"
	MasterJournalPort            = "alluxio.master.embedded.journal.port"
	MasterJournalElectionTimeout = "alluxio.master.embedded.journal.election.timeout.min"
	UserRPCRetryMaxDuration      = "alluxio.user.rpc.retry.max.duration"
	WorkerHostname               = "alluxio.worker.hostname"
	WorkerRPCPort                = "alluxio.worker.rpc.port"
	WorkerWebPort                = "alluxio.worker.web.port"
	WorkerMemorySize             = "alluxio.worker.ramdisk.size"
	WorkerDomainSocket           = "alluxio.worker.data.server.domain.socket.address"
	WorkerAsyncCacheMax          = "alluxio.worker.network.async.cache.manager.threads.max"
	UserWriteType                = "alluxio.user.file.writetype.default"
	UserReadType                 = "alluxio.user.file.readtype.default"
	UserReplicationDurable       = "alluxio.user.file.replication.durable"
	UserBlockSize                = "alluxio.user.block.size.bytes.default"
	UserHostname                 = "alluxio.user.hostname"
	UserDataReadTimeout          = "alluxio.user.streaming.data.read.timeout"
	UserReplicationMin           = "alluxio.user.file.replication.min"
	JobMasterHostname            = "alluxio.job.master.hostname"
	JobMasterRPCPort             = "alluxio.job.master.rpc.port"
	JobMasterWebPort             = "alluxio.job.master.web.port"
	JobWorkerRPCPort             = "alluxio.job.worker.rpc.port"
	JobWorkerWebPort             = "alluxio.job.worker.web.port"
	JobWorkerThreads             = "alluxio.job.worker.threadpool.size"
	JobWorkerBandwidth           = "alluxio.job.worker.bandwidth"
	// UserMetadataSyncInterval: how old a path's UFS metadata may get
	// before an access re-reads it (-1 never, 0 always; also a mount option).
	UserMetadataSyncInterval = "alluxio.user.file.metadata.sync.interval"
	// Alcove's own keys (written alcove.security.*).
	SecurityTLSDir = "alluxio.security.tls.dir"
	// MasterGCHeapFloor: the master's GC runs no more often than once per
	// this much garbage while its live heap is small (engine/gctune; 0 off).
	MasterGCHeapFloor     = "alluxio.master.gc.heap.floor"
	SecurityTokenLifetime = "alluxio.security.block.token.lifetime"
	SecuritySuperusers    = "alluxio.security.superusers"  // comma-separated
	SecuritySupergroups   = "alluxio.security.supergroups" // comma-separated
)

var known = map[string]func(string) error{
	MasterHostname:               nonEmpty,
	MasterRPCPort:                port,
	MasterWebPort:                port,
	MasterJournalFolder:          nonEmpty,
	MasterRootUFS:                nonEmpty,
	MasterWorkerTimeout:          duration,
	MasterRPCAddresses:           hostPortList,
	MasterJournalAddresses:       nonEmpty,
	MasterJournalPort:            port,
	MasterJournalElectionTimeout: duration,
	UserRPCRetryMaxDuration:      duration,
	WorkerHostname:               nonEmpty,
	WorkerRPCPort:                port,
	WorkerWebPort:                port,
	WorkerMemorySize:             size,
	WorkerDomainSocket:           nonEmpty,
	WorkerAsyncCacheMax:          positiveInt,
	UserWriteType:                func(s string) error { _, err := meta.ParseWriteType(s); return err },
	UserReadType:                 func(s string) error { _, err := meta.ParseReadType(s); return err },
	UserReplicationDurable:       positiveInt,
	UserBlockSize:                size,
	UserHostname:                 nonEmpty,
	UserDataReadTimeout:          duration,
	UserReplicationMin:           nonNegativeInt,
	JobMasterHostname:            nonEmpty,
	JobMasterRPCPort:             port,
	JobMasterWebPort:             port,
	JobWorkerRPCPort:             port,
	JobWorkerWebPort:             port,
	JobWorkerThreads:             positiveInt,
	JobWorkerBandwidth:           size,
	SecurityTLSDir:               nonEmpty,
	MasterGCHeapFloor:            size,
	SecurityTokenLifetime:        duration,
	SecuritySuperusers:           nonEmpty,
	SecuritySupergroups:          nonEmpty,
	UserMetadataSyncInterval:     func(s string) error { _, err := ParseSyncInterval(s); return err },
}

// Properties is a parsed properties file plus where it came from.
type Properties struct {
	Path   string
	values map[string]string
	// Warnings lists keys that were present but are not implemented.
	Warnings []string
}

// canonical maps alcove.x to alluxio.x.
func canonical(key string) string {
	if rest, ok := strings.CutPrefix(key, "alcove."); ok {
		return "alluxio." + rest
	}
	return key
}

// Parse reads Java-style properties text: key=value or key: value, # and !
// comments. Values are validated; a bad value is an error naming the line.
func Parse(path string, text string) (*Properties, error) {
	p := &Properties{Path: path, values: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			i = strings.IndexFunc(line, unicode.IsSpace)
		}
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: %q is not key=value", path, n, line)
		}
		key := canonical(strings.TrimSpace(line[:i]))
		val := strings.TrimSpace(line[i+1:])
		check, ok := known[key]
		if strings.HasPrefix(key, MasterRootUFSOption) && len(key) > len(MasterRootUFSOption) {
			check, ok = nonEmpty, true // checked by the UFS when the root is mounted
		}
		if !ok {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s:%d: unknown property %q is ignored", path, n, key))
			continue
		}
		if err := check(val); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, n, key, err)
		}
		p.values[key] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: read properties: %w", path, err)
	}
	return p, nil
}

// Load reads the first properties file found: explicit path, then
// $ALCOVE_CONF_DIR/alcove-site.properties, then ./conf/alcove-site.properties,
// then /etc/alcove/alcove-site.properties. No file is not an error.
func Load(explicit string) (*Properties, error) {
	candidates := []string{explicit}
	if explicit == "" {
		candidates = nil
		if d := os.Getenv("ALCOVE_CONF_DIR"); d != "" {
			candidates = append(candidates, filepath.Join(d, "alcove-site.properties"))
		}
		candidates = append(candidates, filepath.Join("conf", "alcove-site.properties"), "/etc/alcove/alcove-site.properties")
	}
	for _, c := range candidates {
		b, err := os.ReadFile(c)
		if err != nil {
			if os.IsNotExist(err) && explicit == "" {
				continue
			}
			return nil, fmt.Errorf("read properties %s: %w", c, err)
		}
		return Parse(c, string(b))
	}
	return &Properties{values: map[string]string{}}, nil
}

// Get returns a value and whether it was set.
func (p *Properties) Get(key string) (string, bool) {
	v, ok := p.values[canonical(key)]
	return v, ok
}

// String returns a value or def.
func (p *Properties) String(key, def string) string {
	if v, ok := p.Get(key); ok {
		return v
	}
	return def
}

// WithPrefix returns the values whose keys start with prefix, keyed by the
// rest of the key (nil when there are none).
func (p *Properties) WithPrefix(prefix string) map[string]string {
	var out map[string]string
	for k, v := range p.values {
		if rest, ok := strings.CutPrefix(k, canonical(prefix)); ok && rest != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[rest] = v
		}
	}
	return out
}

// Keys returns the set keys, sorted.
func (p *Properties) Keys() []string {
	out := make([]string, 0, len(p.values))
	for k := range p.values {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Int returns an integer value or def (values were validated on Parse).
func (p *Properties) Int(key string, def int) int {
	if v, ok := p.Get(key); ok {
		n, _ := strconv.Atoi(v)
		return n
	}
	return def
}

// Size returns a byte size value or def.
func (p *Properties) Size(key string, def int64) int64 {
	if v, ok := p.Get(key); ok {
		n, _ := ParseSize(v)
		return n
	}
	return def
}

// Duration returns a duration value or def.
func (p *Properties) Duration(key string, def time.Duration) time.Duration {
	if v, ok := p.Get(key); ok {
		d, _ := ParseDuration(v)
		return d
	}
	return def
}

func nonEmpty(s string) error {
	if s == "" {
		return fmt.Errorf("empty value")
	}
	return nil
}

func port(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	return nil
}

// hostPortList accepts host:port[,host:port...].
func hostPortList(s string) error {
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		i := strings.LastIndex(a, ":")
		if i <= 0 || port(a[i+1:]) != nil {
			return fmt.Errorf("%q is not a list of HOST:PORT", s)
		}
	}
	return nil
}

func positiveInt(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a positive integer", s)
	}
	return nil
}

func nonNegativeInt(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer", s)
	}
	return nil
}

func size(s string) error { _, err := ParseSize(s); return err }

func duration(s string) error { _, err := ParseDuration(s); return err }

// ParseSize parses sizes as Alluxio writes them: "1024", "64MB", "1GB",
// "512MiB", "2g", "1.5KB" — binary multiples (Alluxio treats MB as MiB); a
// fraction of a byte is dropped. Negative, non-finite (NaN, Inf) and values
// beyond int64 (8 EiB) are errors: no size setting has a meaning for them.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	// Whole numbers are exact (a float64 has 53 bits: 9223372036854775807 is not one).
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		switch {
		case n < 0:
			return 0, fmt.Errorf("%q is not a size: it is negative", s)
		case n > math.MaxInt64/mult:
			return 0, errSizeTooLarge(s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if errors.Is(err, strconv.ErrRange) { // ±Inf beyond float64, or 0 below its smallest
		err = nil
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a size (e.g. 512MB, 2GB)", s)
	case f < 0:
		return 0, fmt.Errorf("%q is not a size: it is negative", s)
	case math.IsNaN(f) || math.IsInf(f, 1) && strings.Contains(t, "INF"):
		return 0, fmt.Errorf("%q is not a size: it is not a finite number", s)
	}
	v := f * float64(mult)
	if v >= 0x1p63 { // float64(math.MaxInt64) rounds up to 2^63; +Inf lands here too
		return 0, errSizeTooLarge(s)
	}
	return int64(v), nil
}

func errSizeTooLarge(s string) error {
	return fmt.Errorf("%q is not a size: it exceeds %d bytes (8 EiB)", s, int64(math.MaxInt64))
}

// ParseDuration accepts Go durations and Alluxio's bare milliseconds ("30000",
// "5min"). Negative durations and bare milliseconds beyond time.Duration
// (about 292 years) are errors.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		switch {
		case n < 0:
			return 0, fmt.Errorf("%q is not a duration: it is negative", s)
		case err != nil || n > math.MaxInt64/int64(time.Millisecond):
			return 0, fmt.Errorf("%q is not a duration: %s ms exceed %v", s, t, time.Duration(math.MaxInt64))
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	t = strings.Replace(strings.Replace(t, "min", "m", 1), "sec", "s", 1)
	d, err := time.ParseDuration(t)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s, 5min, 30000)", s)
	case d < 0:
		return 0, fmt.Errorf("%q is not a duration: it is negative", s)
	}
	return d, nil
}

// ParseSyncInterval parses alluxio.user.file.metadata.sync.interval: -1
// (never re-read the UFS once loaded), 0 (on every access) or a duration
// such as 30s, 5min or bare milliseconds.
func ParseSyncInterval(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "-1" {
		return -1, nil
	}
	d, err := ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a sync interval (-1 never, 0 always, or a duration such as 30s)", s)
	}
	return d, nil
}
