package extender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/extender/locality"
	"github.com/alcove-io/alcove/extender/podpaths"
)

// DefaultListen is the extender's default address (see extender/README.md).
const DefaultListen = ":8099"

// Config configures a Server.
type Config struct {
	// Listen is the HTTP address (default DefaultListen).
	Listen string
	// MasterAddresses are the Alcove masters; the leader is found.
	MasterAddresses []string
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster config.
	Kubeconfig string
	// Handler tunes scoring and filtering.
	Handler HandlerConfig
	// Feed tunes the master stream's reconnection.
	Feed locality.FeedConfig
	// Objects overrides the informer-backed API lookups (tests).
	Objects podpaths.Objects
	// Watcher overrides the master client (tests).
	Watcher locality.Watcher
	// TLS is the extender's certificate (role node) for the master; nil:
	// plaintext.
	TLS *security.Source
}

// Server runs the extender: the master stream feeding the locality index,
// the informers resolving pods' volumes, and the HTTP handler.
type Server struct {
	cfg     Config
	Index   *locality.Index
	lis     net.Listener
	handler *Handler
}

// New validates cfg and binds the listen address.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Handler.MinFraction < 0 || cfg.Handler.MinFraction > 1 {
		return nil, fmt.Errorf("configure extender: min fraction %v is outside 0..1", cfg.Handler.MinFraction)
	}
	if cfg.Watcher == nil && len(cfg.MasterAddresses) == 0 {
		return nil, errors.New("configure extender: no master address")
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return &Server{cfg: cfg, Index: locality.New(), lis: lis}, nil
}

// kubeConfig loads the kubeconfig file, or the in-cluster configuration
// when none is named (rest.ErrNotInCluster outside a cluster).
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		return rest.InClusterConfig()
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q: %w", path, err)
	}
	return rc, nil
}

// Addr is the bound HTTP address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithName("extender")
	ctx, cancel := context.WithCancel(klog.NewContext(ctx, logger))
	defer cancel()
	defer s.lis.Close()
	objects := s.cfg.Objects
	syncDone := make(chan struct{})
	if objects == nil {
		rc, err := kubeConfig(s.cfg.Kubeconfig)
		switch {
		case errors.Is(err, rest.ErrNotInCluster):
			logger.Info("WARNING: no Kubernetes API (no --kubeconfig, not in a cluster): annotation-only mode, pods' claims are not resolved; only the annotation " + podpaths.AnnotationDataPaths + " names a pod's data")
			objects = podpaths.AnnotationsOnly{}
			close(syncDone)
		case err != nil:
			return err
		default:
			rc.UserAgent = "alcove-extender"
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("create kubernetes client: %w", err)
			}
			l := podpaths.StartListers(ctx, cs, 10*time.Minute)
			go func() {
				defer close(syncDone)
				if err := l.WaitForSync(ctx); err == nil {
					logger.Info("Volume informers synced")
				}
			}()
			objects = l
		}
	} else {
		close(syncDone)
	}
	defer func() { cancel(); <-syncDone }() // the informers' wait ends with ctx
	watcher := s.cfg.Watcher
	if watcher == nil {
		c, err := client.New(client.Config{MasterAddresses: s.cfg.MasterAddresses, Node: "alcove-extender", TLS: s.cfg.TLS})
		if err != nil {
			return fmt.Errorf("create master client: %w", err)
		}
		defer c.Close()
		watcher = c
	}
	s.handler = NewHandler(s.cfg.Handler, s.Index, s.Index, &podpaths.Resolver{Objects: objects}, logger)
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		locality.Feed(ctx, watcher, s.Index, s.cfg.Feed, nil)
	}()
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.lis) }()
	logger.Info("Extender serving", "address", s.Addr(), "masters", s.cfg.MasterAddresses, "hard", s.cfg.Handler.Hard)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve extender on %s: %w", s.Addr(), err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	cancel()
	<-feedDone
	return err
}
