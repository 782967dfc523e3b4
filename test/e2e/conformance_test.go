package e2e

// The Kubernetes storage conformance suite against Alcove: the upstream
// tests of k8s.io/kubernetes/test/e2e/storage/testsuites (v1.33.13), run by
// test/e2e/storage/external for the driver definition in
// testdata/storage-driver.yaml, against the chart installed on the cluster of
// hack/cluster.sh. hack/conformance.sh builds the suite binary and its test
// images and sets ALCOVE_STORAGE_SUITE; `make conformance` runs this.

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// Spec labels no subset runs: Disruptive specs stop kubelets or nodes,
// Serial ones need the cluster to themselves, Feature: ones need features
// (snapshots, volume groups, ...) the driver does not claim.
const excludedLabels = `\[Disruptive\]|\[Serial\]|\[Feature:`

// suiteConfig is one run of the suite.
type suiteConfig struct {
	binary, driver, results string
	subset                  string // fast or slow
	focus, skip             string
}

func newSuiteConfig(c *cluster) (*suiteConfig, error) {
	s := &suiteConfig{
		binary:  os.Getenv("ALCOVE_STORAGE_SUITE"),
		driver:  filepath.Join(c.root, "test", "e2e", "testdata", "storage-driver.yaml"),
		results: os.Getenv("ALCOVE_CONFORMANCE_RESULTS"),
		subset:  os.Getenv("ALCOVE_CONFORMANCE_SUBSET"),
	}
	if s.results == "" {
		s.results = filepath.Join(c.dir, "conformance")
	}
	switch s.subset {
	case "", "fast":
		s.subset = "fast"
		s.focus, s.skip = `External.Storage`, excludedLabels+`|\[Slow\]`
	case "slow":
		s.focus, s.skip = `External.Storage.*\[Slow\]`, excludedLabels
	default:
		return nil, fmt.Errorf("ALCOVE_CONFORMANCE_SUBSET=%q: want fast or slow", s.subset)
	}
	return s, nil
}

// TestConformance installs the chart, runs the storage suite and prints its
// summary (specs run / passed / failed / skipped, each failure, each skipped
// spec with what excludes it); every spec that runs must pass.
func TestConformance(t *testing.T) {
	c := newCluster(t)
	s, err := newSuiteConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	require(t, s.binary != "", "ALCOVE_STORAGE_SUITE is not set: run hack/conformance.sh (make conformance)")
	inst := c.installed()
	c.checkFor("storage-suite-"+s.subset, 100*time.Minute, inst, func(ctx context.Context) error { return c.runSuite(ctx, s) })
	c.check("helm-uninstall-leaves-no-mounts", inst, func(ctx context.Context) error { return c.uninstall(ctx, "") })
}

// runSuite runs the suite binary (its output goes to stdout and
// results/suite.log), then summarizes its JUnit report.
func (c *cluster) runSuite(ctx context.Context, s *suiteConfig) error {
	if err := os.MkdirAll(s.results, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(s.results, "suite.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{
		"-test.timeout=0", "-test.v",
		"-kubeconfig=" + c.kubeconfig,
		"-storage.testdriver=" + s.driver,
		// kubelet's root on every node of hack/cluster.sh, as on a standard node.
		"-kubelet-root-dir=/var/lib/kubelet",
		"-report-dir=" + s.results,
		"-ginkgo.focus=" + s.focus,
		"-ginkgo.skip=" + s.skip,
		"-ginkgo.no-color",
		"-ginkgo.timeout=95m",
	}
	fmt.Printf("      %s %s\n", filepath.Base(s.binary), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, s.binary, args...)
	cmd.Dir = c.root
	cmd.Stdout = io.MultiWriter(os.Stdout, logf)
	cmd.Stderr = logf
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start).Round(time.Second)
	junit := filepath.Join(s.results, "junit_01.xml")
	specs, err := readJUnit(junit)
	if err != nil {
		return fmt.Errorf("suite (%v) left no report: %w; log: %s", runErr, err, logf.Name())
	}
	sum := summarize(specs, s)
	text := sum.String(s, took) + fmt.Sprintf("JUnit: %s\nlog: %s\n", junit, logf.Name())
	fmt.Print(indent(text))
	if err := os.WriteFile(filepath.Join(s.results, "summary.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	switch {
	case len(sum.failed) > 0:
		return fmt.Errorf("%d of %d specs failed (exit: %v)", len(sum.failed), sum.ran, runErr)
	case sum.ran == 0:
		return fmt.Errorf("no spec ran (exit: %v)", runErr)
	case runErr != nil:
		return fmt.Errorf("suite: %w", runErr)
	}
	return nil
}

// junitCase is a testcase of a Ginkgo JUnit report.
type junitCase struct {
	Name    string     `xml:"name,attr"`
	Status  string     `xml:"status,attr"`
	Time    float64    `xml:"time,attr"`
	Skipped *junitText `xml:"skipped"`
	Failure *junitText `xml:"failure"`
	Error   *junitText `xml:"error"`
}

// junitText is a skipped, failure or error element: Ginkgo writes a
// failure's message as the element's text.
type junitText struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func readJUnit(path string) ([]junitCase, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r struct {
		Suites []struct {
			Cases []junitCase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out []junitCase
	for _, s := range r.Suites {
		out = append(out, s.Cases...)
	}
	return out, nil
}

type suiteSummary struct {
	specs, ran       int
	passed, failed   []string
	skipped          map[string][]string // reason -> specs
	suiteNodeFailure []string            // BeforeSuite, AfterSuite, ... nodes that failed
}

// specName drops the prefix every spec of the run shares.
func specName(full string) string {
	full = strings.TrimPrefix(full, "[It] ")
	if i := strings.Index(full, "] "); strings.HasPrefix(full, "External Storage [Driver: ") && i > 0 {
		full = full[i+2:]
	}
	return full
}

// skipReason says what excluded a spec that did not run.
func skipReason(c junitCase, s *suiteConfig) string {
	msg := ""
	if c.Skipped != nil {
		msg = c.Skipped.Message
	}
	if r, ok := strings.CutPrefix(msg, "skipped - "); ok {
		r = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(r), "-- skipping"))
		return "the suite skips it: " + firstLine(r)
	}
	if m := regexp.MustCompile(`\[Feature:[^\]]*\]`).FindString(c.Name); m != "" {
		return "excluded: " + m + " (a feature the driver definition does not claim)"
	}
	switch {
	case strings.Contains(c.Name, "[Disruptive]"):
		return "excluded: [Disruptive] (stops kubelets or nodes)"
	case strings.Contains(c.Name, "[Serial]"):
		return "excluded: [Serial] (needs the cluster to itself)"
	case s.subset == "fast" && strings.Contains(c.Name, "[Slow]"):
		return "not in the fast subset: [Slow] (make conformance-slow)"
	case s.subset == "slow" && !strings.Contains(c.Name, "[Slow]"):
		return "not in the slow subset (make conformance runs the others)"
	}
	return "not selected: " + msg
}

func summarize(cases []junitCase, s *suiteConfig) *suiteSummary {
	sum := &suiteSummary{skipped: map[string][]string{}}
	for _, c := range cases {
		if !strings.HasPrefix(c.Name, "[It] ") {
			if c.Failure != nil || c.Error != nil {
				sum.suiteNodeFailure = append(sum.suiteNodeFailure, c.Name+": "+failMessage(c))
			}
			continue
		}
		sum.specs++
		name := specName(c.Name)
		switch {
		case c.Status == "skipped" || c.Status == "pending":
			r := skipReason(c, s)
			sum.skipped[r] = append(sum.skipped[r], name)
		case c.Status == "passed":
			sum.ran++
			sum.passed = append(sum.passed, fmt.Sprintf("%s (%.0fs)", name, c.Time))
		default:
			sum.ran++
			sum.failed = append(sum.failed, fmt.Sprintf("%s (%s, %.0fs): %s", name, c.Status, c.Time, failMessage(c)))
		}
	}
	sum.failed = append(sum.failed, sum.suiteNodeFailure...)
	return sum
}

func failMessage(c junitCase) string {
	for _, t := range []*junitText{c.Failure, c.Error} {
		if t == nil {
			continue
		}
		if m := firstLine(t.Message); m != "" {
			return m
		}
		if m := firstLine(strings.TrimPrefix(strings.TrimSpace(t.Text), "[FAILED] ")); m != "" {
			return m
		}
	}
	return "(no message)"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func (sum *suiteSummary) String(s *suiteConfig, took time.Duration) string {
	var b strings.Builder
	skipped := 0
	for _, specs := range sum.skipped {
		skipped += len(specs)
	}
	fmt.Fprintf(&b, "conformance (%s subset): %d specs, %d run, %d passed, %d failed, %d skipped in %v\n",
		s.subset, sum.specs, sum.ran, len(sum.passed), len(sum.failed), skipped, took)
	for _, f := range sum.failed {
		fmt.Fprintf(&b, "FAILED  %s\n", f)
	}
	for _, p := range sum.passed {
		fmt.Fprintf(&b, "passed  %s\n", p)
	}
	reasons := make([]string, 0, len(sum.skipped))
	for r := range sum.skipped {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return len(sum.skipped[reasons[i]]) > len(sum.skipped[reasons[j]]) })
	fmt.Fprintf(&b, "skipped, by what excludes them:\n")
	for _, r := range reasons {
		specs := sum.skipped[r]
		sort.Strings(specs)
		fmt.Fprintf(&b, "  %d: %s\n", len(specs), r)
		for _, sp := range specs {
			fmt.Fprintf(&b, "      %s\n", sp)
		}
	}
	return b.String()
}

// TestSummarize: how a JUnit report of the suite is counted and what each
// skipped spec is listed under (no cluster needed).
func TestSummarize(t *testing.T) {
	t.Setenv("ALCOVE_CONFORMANCE_SUBSET", "fast")
	s, err := newSuiteConfig(&cluster{t: t})
	if err != nil {
		t.Fatal(err)
	}
	const pre = "[It] External Storage [Driver: csi.alcove.io] "
	skipped := func(msg string) *junitText { return &junitText{Message: msg} }
	cases := []struct {
		c      junitCase
		reason string // "" for specs that ran
	}{
		{junitCase{Name: pre + "[Testpattern: Dynamic PV (default fs)] volumes should store data", Status: "passed"}, ""},
		{junitCase{Name: pre + "[Testpattern: Dynamic PV (default fs)] volumes should allow exec", Status: "failed", Failure: &junitText{Text: "[FAILED] boom\nIn [It] at: x.go:1"}}, ""},
		{junitCase{Name: pre + "[Testpattern: Dynamic PV (block volmode)] volumes should store data", Status: "skipped",
			Skipped: skipped("skipped - Driver csi.alcove.io doesn't support Block -- skipping")}, "the suite skips it: Driver csi.alcove.io doesn't support Block"},
		{junitCase{Name: pre + "[Testpattern: Dynamic PV (default fs)] snapshottable [Feature:VolumeSnapshotDataSource] x", Status: "skipped",
			Skipped: skipped("skipped")}, "excluded: [Feature:VolumeSnapshotDataSource] (a feature the driver definition does not claim)"},
		{junitCase{Name: pre + "[Testpattern: Dynamic PV (default fs)] subPath should support restarting containers [Slow]", Status: "skipped",
			Skipped: skipped("skipped")}, "not in the fast subset: [Slow] (make conformance-slow)"},
		{junitCase{Name: "[SynchronizedAfterSuite] ", Status: "passed"}, ""},
	}
	var report []junitCase
	for _, tc := range cases {
		report = append(report, tc.c)
		if tc.reason != "" {
			if got := skipReason(tc.c, s); got != tc.reason {
				t.Errorf("skipReason(%s) = %q, want %q", tc.c.Name, got, tc.reason)
			}
		}
	}
	sum := summarize(report, s)
	if sum.specs != 5 || sum.ran != 2 || len(sum.passed) != 1 || len(sum.failed) != 1 || len(sum.skipped) != 3 {
		t.Errorf("summary: %d specs, %d ran, %d passed, %d failed, %d skip reasons; want 5, 2, 1, 1, 3", sum.specs, sum.ran, len(sum.passed), len(sum.failed), len(sum.skipped))
	}
	if want := "[Testpattern: Dynamic PV (default fs)] volumes should allow exec (failed, 0s): boom"; len(sum.failed) == 1 && sum.failed[0] != want {
		t.Errorf("failure line %q, want %q", sum.failed[0], want)
	}
	if re := regexp.MustCompile(s.skip); !re.MatchString(cases[3].c.Name) || re.MatchString(cases[0].c.Name) {
		t.Errorf("the fast subset's skip pattern %q must exclude the known defect and keep the others", s.skip)
	}
}
