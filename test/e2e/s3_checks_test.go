package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The S3 part of the end-to-end test (issue 10): MinIO runs in the cluster
// (image localhost/minio, built by hack/k8s-images.sh), the chart's root
// UFS is a MinIO bucket with credentials from a Secret, and a StorageClass
// `ufs: s3://...` takes its credentials from CSI provisioner secrets.
const (
	minioNS     = "storage"
	minioUser   = "alcove-e2e"
	minioSecret = "alcove-e2e-secret-5f1c0d"
	rootBucket  = "alcove-root"
	dataBucket  = "datasets"
	minioDNS    = "http://minio." + minioNS + ".svc.cluster.local:9000"
)

const minioYAML = `apiVersion: v1
kind: Namespace
metadata: {name: storage}
---
apiVersion: v1
kind: Secret
metadata: {name: minio, namespace: storage}
stringData: {MINIO_ROOT_USER: %[1]s, MINIO_ROOT_PASSWORD: %[2]s}
---
apiVersion: v1
kind: Service
metadata: {name: minio, namespace: storage}
spec:
  clusterIP: None
  selector: {app: minio}
  ports: [{name: s3, port: 9000}]
---
apiVersion: v1
kind: Pod
metadata: {name: minio, namespace: storage, labels: {app: minio}}
spec:
  containers:
  - name: minio
    image: localhost/minio:e2e
    imagePullPolicy: Never
    args: [server, /data, --address, ":9000", --certs-dir, /tmp/certs]
    env: [{name: HOME, value: /tmp}, {name: MINIO_BROWSER, value: "off"}, {name: MINIO_UPDATE, value: "off"}]
    envFrom: [{secretRef: {name: minio}}]
    readinessProbe: {httpGet: {path: /minio/health/ready, port: 9000}, periodSeconds: 2}
    volumeMounts: [{name: data, mountPath: /data}]
    resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {memory: 1Gi}}
  volumes: [{name: data, emptyDir: {}}]
`

// minioUp starts MinIO, creates the buckets and puts the word file into
// the data bucket with a plain S3 client (not through Alcove), and creates
// the Secret the chart reads the root UFS credentials from.
func (c *cluster) minioUp(ctx context.Context) error {
	c.t.Cleanup(func() { // later tests install the chart on the host directory UFS
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, _ = c.kubectl(ctx, "delete", "secret", "alcove-s3", "-n", releaseNS, "--ignore-not-found")
		_, _ = c.kubectl(ctx, "delete", "namespace", minioNS, "--wait=true", "--timeout=90s", "--ignore-not-found")
	})
	if _, err := c.run(ctx, fmt.Sprintf(minioYAML, minioUser, minioSecret), "kubectl", "apply", "-f", "-"); err != nil {
		return err
	}
	if err := c.waitPod(ctx, minioNS, "minio", false, 3*time.Minute); err != nil {
		return err
	}
	p, err := c.cs.CoreV1().Pods(minioNS).Get(ctx, "minio", metav1.GetOptions{})
	if err != nil {
		return err
	}
	c.s3 = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + p.Status.PodIP + ":9000"), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(minioUser, minioSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired, ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
	cl := c.s3
	for _, b := range []string{rootBucket, dataBucket} {
		if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	text, _ := wordsText(10)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(dataBucket), Key: aws.String("words/words.txt"), Body: strings.NewReader(text)}); err != nil {
		return fmt.Errorf("put words.txt into s3://%s: %w", dataBucket, err)
	}
	// The chart's root UFS credentials, in the release namespace.
	if _, err := c.kubectl(ctx, "create", "namespace", releaseNS); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	_, err = c.kubectl(ctx, "create", "secret", "generic", "alcove-s3", "-n", releaseNS,
		"--from-literal=AWS_ACCESS_KEY_ID="+minioUser, "--from-literal=AWS_SECRET_ACCESS_KEY="+minioSecret)
	fmt.Printf("      MinIO at %s (%s), buckets %s and %s\n", p.Status.PodIP, minioDNS, rootBucket, dataBucket)
	c.s3Root = err == nil
	return err
}

// ufsFile reads a file of the chart's root UFS: an object of the root
// bucket when the root is on MinIO, else a file of the host directory.
func (c *cluster) ufsFile(ctx context.Context, p string) ([]byte, error) {
	if !c.s3Root {
		return os.ReadFile(filepath.Join(c.dir, "ufs", p))
	}
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(rootBucket), Key: aws.String(strings.TrimPrefix(p, "/"))})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s%s: %w", rootBucket, p, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// s3Values are the chart values putting the root UFS on MinIO.
func s3Values() string {
	return fmt.Sprintf(`  uri: s3://%s/
  options:
    alluxio.underfs.s3.endpoint: %s
    alluxio.underfs.s3.disable.dns.buckets: "true"
  credentialsSecret: {name: alcove-s3}
`, rootBucket, minioDNS)
}

// s3RootUFS: the master's root mount is the MinIO bucket, and the mount
// table (what clients see) shows no credential.
func (c *cluster) s3RootUFS(ctx context.Context) error {
	out, err := c.kubectl(ctx, "exec", "-n", releaseNS, release+"-master-0", "--", "alcove", "fs", "mount")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "s3://"+rootBucket+"/  on  /") || strings.Contains(out, minioSecret) {
		return fmt.Errorf("mount table:\n%s", out)
	}
	cm, err := c.kubectl(ctx, "get", "configmap", "-n", releaseNS, release+"-conf", "-o", "yaml")
	if err != nil || strings.Contains(cm, minioSecret) {
		return fmt.Errorf("the ConfigMap holds the secret (or cannot be read: %v)", err)
	}
	fmt.Print(indent(out))
	return nil
}

// s3StorageClassWordCount: a StorageClass mounting s3://datasets/words with
// credentials from CSI provisioner secrets; a Job counts the words of the
// object put into the bucket with a plain S3 client.
func (c *cluster) s3StorageClassWordCount(ctx context.Context) error {
	if _, err := c.kubectl(ctx, "create", "secret", "generic", "s3-creds", "-n", testNS,
		"--from-literal=AWS_ACCESS_KEY_ID="+minioUser, "--from-literal=AWS_SECRET_ACCESS_KEY="+minioSecret); err != nil {
		return err
	}
	sc := fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: alluxio-s3}
provisioner: csi.alcove.io
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
parameters:
  ufs: s3://%s/words
  ufsOption.alluxio.underfs.s3.endpoint: %s
  ufsOption.alluxio.underfs.s3.disable.dns.buckets: "true"
  readOnly: "true"
  csi.storage.k8s.io/provisioner-secret-name: s3-creds
  csi.storage.k8s.io/provisioner-secret-namespace: ${pvc.namespace}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: words-s3}
spec:
  storageClassName: alluxio-s3
  accessModes: [ReadOnlyMany]
  resources: {requests: {storage: 1Gi}}
`, dataBucket, minioDNS)
	if err := c.apply(ctx, sc); err != nil {
		return err
	}
	_, want := wordsText(10)
	lines, err := c.wordCountJob(ctx, "wordcount-s3", "words-s3", "/data/words.txt", "", want)
	if err != nil {
		return err
	}
	fmt.Printf("      s3://%s/words/words.txt through PVC words-s3: counts exact: %s\n", dataBucket, strings.ReplaceAll(lines, "\n", ", "))
	// Deleting the claim unmounts the bucket (its data stays).
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(testNS).Get(ctx, "words-s3", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if _, err := c.kubectl(ctx, "delete", "-n", testNS, "job/wordcount-s3", "pvc/words-s3", "--wait=true", "--timeout=120s"); err != nil {
		return err
	}
	return poll(ctx, 500*time.Millisecond, "PV "+pvc.Spec.VolumeName+" deleted by the provisioner", func() (bool, error) {
		_, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
