package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// TestExtenderWithoutKubernetes runs `alcove extender` with no kubeconfig
// outside a cluster, as on a laptop: it warns and serves in annotation-only
// mode, scoring the node whose worker caches what a pod's alcove.io/data-paths
// names.
func TestExtenderWithoutKubernetes(t *testing.T) {
	c := newCluster(t)
	src := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(src, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustRun("fs", "copyFromLocal", "--write-type", "MUST_CACHE", src, "/train/part-0")

	listen := "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0])
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBERNETES_") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	var log bytes.Buffer
	cmd := exec.Command(c.bin, "--master", c.master, "--tls-dir", filepath.Join(c.dir, "tls", "node"), "extender", "--listen", listen)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("extender did not stop within 10s of SIGINT")
		}
	})

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "trainer", Namespace: "default", UID: "u1",
		Annotations: map[string]string{"alcove.io/data-paths": "/train"}}}
	body, err := json.Marshal(&extenderv1.ExtenderArgs{Pod: pod, NodeNames: &[]string{c.node, "elsewhere"}})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("extender exited: %v\n%s", exitErr, log.String())
		default:
		}
		got, err := prioritize(listen, body)
		if err == nil && got[c.node] == extenderv1.MaxExtenderPriority && got["elsewhere"] == 0 {
			break
		}
		last = fmt.Sprintf("%v %v", got, err)
		if time.Now().After(deadline) {
			t.Fatalf("no score for %s within 30s; last answer %s\nextender log:\n%s", c.node, last, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "annotation-only mode") {
		t.Fatalf("extender did not say it runs annotation-only:\n%s", log.String())
	}
}

func prioritize(addr string, body []byte) (map[string]int64, error) {
	resp, err := http.Post("http://"+addr+"/prioritize", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var list extenderv1.HostPriorityList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, h := range list {
		out[h.Host] = h.Score
	}
	return out, nil
}
