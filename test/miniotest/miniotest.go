// Package miniotest runs a real MinIO server for tests: a separate process
// (built by hack/minio.sh into .cache/bin/minio, never linked into Alcove)
// on 127.0.0.1 with a free port and a temporary data directory.
//
// Without the binary a test is skipped, except under CI=true, where it
// fails: `make test` builds MinIO first.
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Server is one MinIO process.
type Server struct {
	t         testing.TB
	bin, dir  string
	Port      int
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string // recognisable: alcove-test-secret-<random>
	cmd       *exec.Cmd
	exited    chan struct{}
	logPath   string
	certsDir  string       // https when set
	http      *http.Client // for readiness checks
	host      string       // listen address (127.0.0.1 unless in a network namespace)
	netns     string       // named network namespace (ip netns) it runs in, if any
}

// Binary finds the MinIO binary: $ALCOVE_MINIO, else .cache/bin/minio of
// the repository. Missing: skip, or fail under CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ALCOVE_MINIO"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("miniotest: no go.mod above the working directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, ".cache", "bin", "minio")
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("MinIO not built (%v): run hack/minio.sh", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

var seq atomic.Int64

func random() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start runs MinIO until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func newServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), AccessKey: "alcove-test-" + random(), SecretKey: "alcove-test-secret-" + random(), http: http.DefaultClient}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.Endpoint = "http://127.0.0.1:" + itoa(s.Port)
	s.host = "127.0.0.1"
	s.logPath = filepath.Join(t.TempDir(), "minio.log")
	return s
}

// StartInNetns runs MinIO until the test ends inside the named network
// namespace (made by the caller with `ip netns add`), listening on host
// there (an address of that namespace this one can route to), port 9000:
// benchmarks put it behind a rate-limited link instead of loopback.
func StartInNetns(t testing.TB, netns, host string) *Server {
	t.Helper()
	s := newServer(t)
	s.netns, s.host, s.Port = netns, host, 9000 // the namespace is the caller's alone: the port is free
	s.Endpoint = "http://" + net.JoinHostPort(host, itoa(s.Port))
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func itoa(n int) string { return strconv.Itoa(n) }

func (s *Server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"server", "--quiet", "--address", net.JoinHostPort(s.host, itoa(s.Port))}
	if s.certsDir != "" {
		args = append(args, "--certs-dir", s.certsDir)
	}
	cmd := exec.Command(s.bin, append(args, s.dir)...)
	if s.netns != "" {
		// ip netns exec enters the namespace and execs MinIO: the process
		// started is MinIO itself.
		cmd = exec.Command("ip", append([]string{"netns", "exec", s.netns, s.bin}, append(args, s.dir)...)...)
	}
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_DOMAIN=localhost", "MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1", "MINIO_PROMETHEUS_AUTH_TYPE=public")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start MinIO: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := s.http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("MinIO exited at start:\n%s", s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("MinIO not ready after 60 s:\n%s", s.Log())
		}
	}
}

// Pid is the server process's id (0 when stopped).
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop kills the server (as a crash would) and waits for it. Idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	for i := 0; i < 100 && s.netns == ""; i++ { // the port may linger for a moment
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err == nil {
			l.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.start()
}

// Log returns the server's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Props are the mount options that reach this server.
func (s *Server) Props() map[string]string {
	return map[string]string{
		"s3a.accessKeyId":                        s.AccessKey,
		"s3a.secretKey":                          s.SecretKey,
		"alluxio.underfs.s3.endpoint":            s.Endpoint,
		"alluxio.underfs.s3.disable.dns.buckets": "true",
	}
}

// Options renders Props as `--option k=v` arguments.
func (s *Server) Options() []string {
	var out []string
	for k, v := range s.Props() {
		out = append(out, "--option", k+"="+v)
	}
	return out
}

// Client is a plain S3 client of the server (to look at the bucket behind
// Alcove's back).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:                 s.http,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// NewBucket creates a bucket with a unique name and returns the name.
func (s *Server) NewBucket() string {
	s.t.Helper()
	name := fmt.Sprintf("alcove-%d-%s", seq.Add(1), random())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		s.t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Put writes an object behind Alcove's back.
func (s *Server) Put(bucket, key string, data []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		s.t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// Get reads an object (nil when it does not exist).
func (s *Server) Get(bucket, key string) []byte {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		if strings.Contains(err.Error(), "NoSuchKey") {
			return nil
		}
		s.t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		s.t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	return b
}

// Keys lists every key under prefix.
func (s *Server) Keys(bucket, prefix string) []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			s.t.Fatalf("list s3://%s/%s: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}
