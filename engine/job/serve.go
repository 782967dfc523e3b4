package job

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// servers are a daemon's gRPC listener and optional web listener.
type servers struct {
	grpc   *grpc.Server
	lis    net.Listener
	web    *http.Server
	webLis net.Listener
}

// listen binds addr (and webAddr unless "") for g and h.
func (s *servers) listen(addr, webAddr string, g *grpc.Server, h http.Handler) error {
	var err error
	if s.lis, err = net.Listen("tcp", addr); err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.grpc = g
	if webAddr != "" {
		if s.webLis, err = net.Listen("tcp", webAddr); err != nil {
			return fmt.Errorf("listen on %s: %w", webAddr, err)
		}
		s.web = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// serve runs the servers in goroutines joined through wg.
func (s *servers) serve(wg *sync.WaitGroup, logger klog.Logger) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.grpc.Serve(s.lis); err != nil {
			logger.Error(err, "RPC server stopped")
		}
	}()
	if s.web != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.web.Serve(s.webLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "Web server stopped")
			}
		}()
	}
}

// stop closes the servers (or the bare listeners when serving never began).
func (s *servers) stop() error {
	var errs []error
	if s.grpc != nil {
		s.grpc.Stop()
	} else if s.lis != nil {
		errs = append(errs, s.lis.Close())
	}
	if s.web != nil {
		errs = append(errs, s.web.Close())
	} else if s.webLis != nil {
		errs = append(errs, s.webLis.Close())
	}
	return errors.Join(errs...)
}

// addr is the RPC address being served (def before listening).
func (s *servers) addr(def string) string {
	if s.lis == nil {
		return def
	}
	return s.lis.Addr().String()
}

// webAddr is the web address being served ("" when off).
func (s *servers) webAddr() string {
	if s.webLis == nil {
		return ""
	}
	return s.webLis.Addr().String()
}
