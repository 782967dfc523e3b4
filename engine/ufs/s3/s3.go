// Package s3 is the S3 under storage (AWS S3, MinIO and any S3-compatible
// store) for URIs s3://bucket/prefix (also s3a://).
//
// It is built on aws-sdk-go-v2, AWS's own SDK: it is kept up to date with
// the protocol (signing, checksums, error codes), it speaks to every
// S3-compatible store through BaseEndpoint and path-style addressing, and its
// standard retryer already does what an object-store client must —
// exponential backoff with full jitter on throttling (SlowDown, 503) and 5xx,
// bounded by a retry quota so an outage does not turn into a retry storm.
// minio-go would serve MinIO equally well but is one vendor's client.
//
// Layout: object keys are the path within the bucket without its leading
// slash. Directories are key prefixes; an empty directory is a zero-byte
// marker object "dir/" (Mkdirs writes one, and so does a delete or rename
// that empties a directory, so the directory does not vanish from S3 while
// Alcove still shows it). Reads are ranged GETs, a long range fetched as
// parallel parts delivered in order; writes stream through a multipart
// upload (parts uploaded while the writer fills the next, never the whole
// object in memory) that becomes visible only on Close. Rename is a
// server-side copy followed by a delete: it is NOT atomic (a failure part
// way leaves copies at the destination and the source intact, so retrying
// is safe). Every call is bounded by alluxio.underfs.s3.request.timeout: a
// metadata call with its retries, and a data transfer by the time it may
// make no progress.
//
// What S3 cannot store, and how Alcove copes:
//   - Persists go through a temporary object (ufs.TempPrefix) that the
//     master moves into place under the file's lock: on S3 that move is a
//     server-side copy then a delete, so the object appears at its name only
//     once whole; the master re-reads its ETag after the move. An orphan's
//     copy moved aside (a file unlinked while open) is likewise a copy.
//   - Sparse files: FS's writer is no ufs.Skipper, so the holes of a sparse
//     file are uploaded as zeros (S3 objects have no holes).
//   - Symbolic links: FS is no ufs.Symlinker. A link made on an S3 mount
//     lives in Alcove's namespace only (journaled like any inode, never in
//     the bucket); a metadata sync keeps it, since only persisted inodes
//     are dropped when the bucket lacks them.
//   - Inode numbers: an object changed behind Alcove's back (ETag) becomes
//     a new inode on the next sync, with a new id and a new POSIX inode
//     number, like a file replaced by a rename; handles open on the old one
//     see it as removed.
//
// Options (mount properties, then the AWS environment variables):
//
//	s3a.accessKeyId, s3a.secretKey          credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); none: anonymous
//	alluxio.underfs.s3.endpoint             http(s)://host:port of an S3-compatible store (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)
//	alluxio.underfs.s3.region               region (also alluxio.underfs.s3.endpoint.region; AWS_REGION; default us-east-1)
//	alluxio.underfs.s3.disable.dns.buckets  true: path-style addressing (host/bucket/key), as MinIO needs
//	alluxio.underfs.s3.secure.http.enabled  scheme for an endpoint given without one (default true: https)
//	alluxio.underfs.s3.ca.file              PEM CA bundle trusted for https endpoints (AWS_CA_BUNDLE)
//	alluxio.underfs.s3.request.timeout      bound of every call (default 20s)
//	alluxio.underfs.s3.max.error.retry      attempts per call on throttling/5xx/network errors (default 5)
//	alluxio.underfs.s3.streaming.upload.partition.size  multipart part size (default 16MB, grows for huge objects)
//	alluxio.underfs.s3.upload.threads.max   parts uploaded at once per object (default 4)
//	alluxio.underfs.s3.read.part.size       ranged-GET part size (default 8MB)
//	alluxio.underfs.s3.read.threads.max     parallel ranged GETs per read (default 8)
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/alcove-io/alcove/engine/conf"
	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/ufs"
)

// Mount property keys (Alluxio's names where Alluxio has one).
const (
	KeyAccessKey     = "s3a.accessKeyId"
	KeySecretKey     = "s3a.secretKey"
	KeyEndpoint      = "alluxio.underfs.s3.endpoint"
	KeyRegion        = "alluxio.underfs.s3.region"
	KeyPathStyle     = "alluxio.underfs.s3.disable.dns.buckets"
	KeySecureHTTP    = "alluxio.underfs.s3.secure.http.enabled"
	KeyCAFile        = "alluxio.underfs.s3.ca.file"
	KeyTimeout       = "alluxio.underfs.s3.request.timeout"
	KeyMaxRetry      = "alluxio.underfs.s3.max.error.retry"
	KeyPartSize      = "alluxio.underfs.s3.streaming.upload.partition.size"
	KeyUploadThreads = "alluxio.underfs.s3.upload.threads.max"
	KeyReadPartSize  = "alluxio.underfs.s3.read.part.size"
	KeyReadThreads   = "alluxio.underfs.s3.read.threads.max"

	keyAWSAccessKey     = "aws.accessKeyId" // Alluxio 1.x spellings
	keyAWSSecretKey     = "aws.secretKey"
	keyEndpointRegion   = "alluxio.underfs.s3.endpoint.region"
	keySessionToken     = "s3a.sessionToken"
	defaultTimeout      = 20 * time.Second
	defaultMaxAttempts  = 5
	defaultPartSize     = 16 << 20
	defaultUploads      = 4
	defaultReadPartSize = 8 << 20
	defaultReadThreads  = 8
	minPartSize         = 5 << 20 // S3's minimum for every part but the last
	maxParts            = 10000
	maxCopySize         = 5 << 30 // larger objects are copied in parts
)

func init() {
	for _, scheme := range []string{"s3", "s3a"} {
		ufs.Register(scheme, func(root *url.URL, props map[string]string) (ufs.UFS, error) {
			return New(root.Host, props)
		})
	}
}

// Options configure an S3 UFS.
type Options struct {
	AccessKey, SecretKey, SessionToken string
	Endpoint                           string // "" means AWS
	Region                             string
	PathStyle                          bool
	CAFile                             string
	Timeout                            time.Duration
	MaxAttempts                        int
	PartSize                           int64
	UploadThreads                      int
	ReadPartSize                       int64
	ReadThreads                        int
	// dial replaces the network dialer (tests: virtual-host names on loopback).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// FS is an S3 bucket as a UFS.
type FS struct {
	client   *s3.Client
	bucket   string
	endpoint string // for messages: where requests go
	opts     Options
	secrets  []string
	copyMax  int64 // objects above this are copied in parts (a field so tests can lower it)
}

var (
	_ ufs.UFS            = (*FS)(nil)
	_ ufs.MatchingOpener = (*FS)(nil)
)

// ParseOptions reads mount properties, falling back to the AWS environment
// variables. Unknown S3 keys are refused, never ignored.
func ParseOptions(props map[string]string) (Options, error) {
	o := Options{Timeout: defaultTimeout, MaxAttempts: defaultMaxAttempts, PartSize: defaultPartSize,
		UploadThreads: defaultUploads, ReadPartSize: defaultReadPartSize, ReadThreads: defaultReadThreads}
	get := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := props[k]; ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	env := func(keys ...string) string {
		for _, k := range keys {
			if v := os.Getenv(k); v != "" {
				return v
			}
		}
		return ""
	}
	for k := range props {
		if !known(k) && !slices.Contains(ufs.MountKeys, k) {
			return o, fmt.Errorf("%w: unknown S3 mount option %q (known: %s)", meta.ErrInvalidArgument, k, strings.Join(knownKeys(), ", "))
		}
	}
	o.AccessKey = get(KeyAccessKey, keyAWSAccessKey)
	o.SecretKey = get(KeySecretKey, keyAWSSecretKey)
	o.SessionToken = get(keySessionToken)
	if o.AccessKey == "" && o.SecretKey == "" {
		o.AccessKey, o.SecretKey = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
		o.SessionToken = env("AWS_SESSION_TOKEN")
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return o, fmt.Errorf("%w: S3 credentials need both %s and %s", meta.ErrInvalidArgument, KeyAccessKey, KeySecretKey)
	}
	o.Region = get(KeyRegion, keyEndpointRegion)
	if o.Region == "" {
		o.Region = env("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	o.CAFile = get(KeyCAFile)
	if o.CAFile == "" {
		o.CAFile = env("AWS_CA_BUNDLE")
	}
	var err error
	if o.PathStyle, err = boolOpt(props, KeyPathStyle, false); err != nil {
		return o, err
	}
	secure, err := boolOpt(props, KeySecureHTTP, true)
	if err != nil {
		return o, err
	}
	o.Endpoint = get(KeyEndpoint)
	if o.Endpoint == "" {
		o.Endpoint = env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if o.Endpoint != "" {
		if !strings.Contains(o.Endpoint, "://") {
			scheme := "https://"
			if !secure {
				scheme = "http://"
			}
			o.Endpoint = scheme + o.Endpoint
		}
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return o, fmt.Errorf("%w: %s=%q: give http(s)://host[:port]", meta.ErrInvalidArgument, KeyEndpoint, o.Endpoint)
		}
	}
	if v := get(KeyTimeout); v != "" {
		if o.Timeout, err = conf.ParseDuration(v); err != nil || o.Timeout <= 0 {
			return o, fmt.Errorf("%w: %s=%q: give a positive duration such as 20s", meta.ErrInvalidArgument, KeyTimeout, v)
		}
	}
	if o.MaxAttempts, err = intOpt(props, KeyMaxRetry, o.MaxAttempts); err != nil {
		return o, err
	}
	if o.UploadThreads, err = intOpt(props, KeyUploadThreads, o.UploadThreads); err != nil {
		return o, err
	}
	if o.ReadThreads, err = intOpt(props, KeyReadThreads, o.ReadThreads); err != nil {
		return o, err
	}
	if o.PartSize, err = sizeOpt(props, KeyPartSize, o.PartSize, minPartSize); err != nil {
		return o, err
	}
	if o.ReadPartSize, err = sizeOpt(props, KeyReadPartSize, o.ReadPartSize, 64<<10); err != nil {
		return o, err
	}
	return o, nil
}

var ownKeys = []string{KeyAccessKey, KeySecretKey, KeyEndpoint, KeyRegion, KeyPathStyle, KeySecureHTTP, KeyCAFile, KeyTimeout,
	KeyMaxRetry, KeyPartSize, KeyUploadThreads, KeyReadPartSize, KeyReadThreads, keyAWSAccessKey, keyAWSSecretKey, keyEndpointRegion, keySessionToken}

func known(k string) bool { return slices.Contains(ownKeys, k) }

func knownKeys() []string {
	out := append(slices.Clone(ownKeys), ufs.MountKeys...)
	slices.Sort(out)
	return slices.Compact(out)
}

func boolOpt(props map[string]string, key string, def bool) (bool, error) {
	v, ok := props[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return def, fmt.Errorf("%w: %s=%q: use true or false", meta.ErrInvalidArgument, key, v)
	}
	return b, nil
}

func intOpt(props map[string]string, key string, def int) (int, error) {
	v, ok := props[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 || n > 1024 {
		return def, fmt.Errorf("%w: %s=%q: give a positive integer", meta.ErrInvalidArgument, key, v)
	}
	return n, nil
}

func sizeOpt(props map[string]string, key string, def, least int64) (int64, error) {
	v, ok := props[key]
	if !ok {
		return def, nil
	}
	n, err := conf.ParseSize(v)
	if err != nil || n < least || n > 5<<30 {
		return def, fmt.Errorf("%w: %s=%q: give a size between %d bytes and 5GB", meta.ErrInvalidArgument, key, v, least)
	}
	return n, nil
}

// New builds the UFS of a bucket from mount properties.
func New(bucket string, props map[string]string) (*FS, error) {
	if bucket == "" {
		return nil, fmt.Errorf("%w: an S3 URI names its bucket: s3://bucket/prefix", meta.ErrInvalidArgument)
	}
	o, err := ParseOptions(props)
	if err != nil {
		return nil, err
	}
	return NewWithOptions(bucket, o)
}

// NewWithOptions builds the UFS of a bucket.
func NewWithOptions(bucket string, o Options) (*FS, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: min(o.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	if o.dial != nil {
		tr.DialContext = o.dial
	}
	tr.TLSHandshakeTimeout = min(o.Timeout, 10*time.Second)
	tr.ResponseHeaderTimeout = o.Timeout
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 128
	tr.DisableCompression = true // ranged reads must see raw bytes
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read S3 CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: S3 CA file %s holds no PEM certificate", meta.ErrInvalidArgument, o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	if o.AccessKey != "" {
		creds = credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)
	}
	so := s3.Options{
		Region:       o.Region,
		Credentials:  creds,
		UsePathStyle: o.PathStyle,
		HTTPClient:   &http.Client{Transport: tr},
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = o.MaxAttempts
			so.MaxBackoff = 5 * time.Second
		}),
		// Stores other than AWS do not all know the newer default checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		Logger:                     logging.Nop{},
	}
	endpoint := "https://s3." + o.Region + ".amazonaws.com"
	if o.Endpoint != "" {
		so.BaseEndpoint = aws.String(o.Endpoint)
		endpoint = o.Endpoint
	}
	f := &FS{client: s3.New(so), bucket: bucket, endpoint: endpoint, opts: o, copyMax: maxCopySize}
	f.secrets = slices.DeleteFunc([]string{o.SecretKey, o.SessionToken, o.AccessKey}, func(s string) bool { return s == "" })
	return f, nil
}

// key is the object key of a UFS path ("/a/b" → "a/b", "/" → "").
func key(p string) string { return strings.TrimPrefix(p, "/") }

// dirPrefix is the key prefix of a directory's children.
func dirPrefix(p string) string {
	if k := key(p); k != "" {
		return k + "/"
	}
	return ""
}

// op bounds one metadata call, retries included.
func (f *FS) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.opts.Timeout)
}

// errTimeout marks a call canceled by this package's own bound.
var errTimeout = errors.New("no answer in time")

// wrap turns an SDK error into one wrapping Alcove's sentinels, naming the
// object and the endpoint and never quoting a credential. parent is the
// caller's context: when it is done, its error is what the caller gets.
func (f *FS) wrap(parent context.Context, verb, k string, err error) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("s3://%s/%s at %s", f.bucket, k, f.endpoint)
	if parent.Err() != nil && !errors.Is(context.Cause(parent), errTimeout) {
		return fmt.Errorf("S3 %s %s: %w", verb, where, parent.Err())
	}
	msg := ufs.Scrub(err.Error(), f.secrets)
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
		msg = ufs.Scrub(ae.ErrorCode()+": "+ae.ErrorMessage(), f.secrets)
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var sentinel error
	switch {
	case code == "NoSuchBucket":
		sentinel, msg = meta.ErrNotFound, "bucket "+f.bucket+" does not exist"
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		sentinel = meta.ErrNotFound
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		sentinel, msg = meta.ErrFailedPrecondition, "the object changed in S3 since Alcove recorded it (sync its metadata: alcove fs ls -f or fs loadMetadata)"
	case code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable:
		sentinel, msg = meta.ErrFailedPrecondition, "the object is shorter than Alcove's metadata says (sync its metadata)"
	case status == http.StatusForbidden || code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch":
		sentinel = meta.ErrPermission
		msg += " (check the mount's credentials: " + KeyAccessKey + ", " + KeySecretKey + ")"
	case status == http.StatusBadRequest || code == "InvalidArgument" || code == "InvalidBucketName":
		sentinel = meta.ErrInvalidArgument
	case errors.Is(err, errTimeout) || errors.Is(context.Cause(parent), errTimeout) || errors.Is(err, context.DeadlineExceeded):
		sentinel, msg = meta.ErrUFSUnavailable, fmt.Sprintf("S3 did not answer within %v (%s)", f.opts.Timeout, KeyTimeout)
	default:
		// Throttling, 5xx and network errors that outlasted the retries.
		sentinel = meta.ErrUFSUnavailable
		var oe *net.OpError
		if errors.As(err, &oe) {
			msg = "unreachable: " + ufs.Scrub(oe.Error(), f.secrets)
		}
	}
	return fmt.Errorf("S3 %s %s: %s: %w", verb, where, msg, sentinel)
}
