// Package kube verifies Kubernetes ServiceAccount tokens for the master
// (security.Authenticator) with the TokenReview API, caching answers.
package kube

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/alcove-io/alcove/engine/meta"
	"github.com/alcove-io/alcove/engine/security"
)

// Cache bounds: an answer is kept this long (a revoked token stops working
// within it), and at most this many tokens are remembered.
const (
	DefaultTTL = time.Minute
	maxEntries = 10000
)

// TokenReviewer is a security.Authenticator backed by the TokenReview API.
// It asks for tokens of the audience security.Audience only: a token
// minted for the API server or another service is refused.
type TokenReviewer struct {
	kube kubernetes.Interface
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]entry // keyed by the token's hash: the token itself is never kept
}

type entry struct {
	user    security.User
	err     error
	expires time.Time
}

var _ security.Authenticator = (*TokenReviewer)(nil)

// NewTokenReviewer returns an authenticator using kube (the master's
// ServiceAccount needs create on tokenreviews, system:auth-delegator).
func NewTokenReviewer(kube kubernetes.Interface, ttl time.Duration) *TokenReviewer {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &TokenReviewer{kube: kube, ttl: ttl, now: time.Now, cache: map[[sha256.Size]byte]entry{}}
}

// Authenticate implements security.Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context, token string) (security.User, error) {
	key := sha256.Sum256([]byte(token))
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.user, e.err
	}
	u, err, final := r.review(ctx, token)
	if !final {
		return u, err // the API server did not answer: ask again next time
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxEntries {
		for k, old := range r.cache {
			if !now.Before(old.expires) || len(r.cache) >= maxEntries {
				delete(r.cache, k)
			}
		}
	}
	r.cache[key] = entry{user: u, err: err, expires: now.Add(r.ttl)}
	return u, err
}

// review asks the API server; final is false when the answer should not be
// cached (the API server could not be reached).
func (r *TokenReviewer) review(ctx context.Context, token string) (security.User, error, bool) {
	tr := &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: token, Audiences: []string{security.Audience}}}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := r.kube.AuthenticationV1().TokenReviews().Create(rctx, tr, metav1.CreateOptions{})
	if err != nil {
		return security.User{}, fmt.Errorf("%w: review ServiceAccount token: %w: %v", meta.ErrUnauthenticated, meta.ErrUnavailable, err), false
	}
	st := res.Status
	if !st.Authenticated {
		// st.Error comes from the API server and does not quote the token.
		return security.User{}, fmt.Errorf("%w: ServiceAccount token refused: %s", meta.ErrUnauthenticated, st.Error), true
	}
	if !audienceOK(st.Audiences) {
		return security.User{}, fmt.Errorf("%w: ServiceAccount token is not for audience %q", meta.ErrUnauthenticated, security.Audience), true
	}
	return security.User{Name: st.User.Username, Groups: st.User.Groups}, nil, true
}

func audienceOK(auds []string) bool {
	for _, a := range auds {
		if a == security.Audience {
			return true
		}
	}
	return false
}
