// Package kube is Sluice's Kubernetes mode: a configuration source that watches the API
// server through informers and hands every change to the translator as one
// translate.Resources value, and a status writer that reports the translation back on
// the objects, from the elected leader only.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// DefaultDebounce is how long the provider waits after a change before it takes a
// snapshot, so that a burst of changes (kubectl apply -f dir/) becomes one translation.
const DefaultDebounce = 75 * time.Millisecond

// Options configure a Provider.
type Options struct {
	// Namespace, when set, limits namespaced kinds to that namespace. Cluster-scoped kinds
	// (GatewayClass, Namespace) are always watched cluster-wide.
	Namespace string
	// Debounce is how long to wait after a change before translating. Default
	// DefaultDebounce.
	Debounce time.Duration
	// Scheme must know every watched kind. Default NewScheme().
	Scheme *runtime.Scheme
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
}

// Provider watches the API server and implements app.Source. Its cache also serves the
// status writer's reads (Reader).
type Provider struct {
	opts  Options
	cache cache.Cache
	// poke holds a pending "something changed" signal; handlers never block on it.
	poke chan struct{}
}

// New returns a Provider for the API server cfg points at. It does not contact the API
// server: Run does.
func New(cfg *rest.Config, o Options) (*Provider, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Scheme == nil {
		s, err := NewScheme()
		if err != nil {
			return nil, err
		}
		o.Scheme = s
	}
	co := cache.Options{
		Scheme: o.Scheme,
		// Managed fields are large and never read.
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	if o.Namespace != "" {
		co.DefaultNamespaces = map[string]cache.Config{o.Namespace: {}}
	}
	c, err := cache.New(cfg, co)
	if err != nil {
		return nil, fmt.Errorf("creating the informer cache: %w", err)
	}
	return &Provider{opts: o, cache: c, poke: make(chan struct{}, 1)}, nil
}

// Reader reads from the provider's informer cache. Reads block until Run has started the
// cache and it has synced.
func (p *Provider) Reader() client.Reader { return p.cache }

// Run implements app.Source: it watches every kind, calls update with the first complete
// state once the informers have synced, then again after every change (debounced). It
// returns nil when ctx is done, after the informers have stopped. When the API server
// goes away the informers keep retrying and the last state keeps serving.
func (p *Provider) Run(ctx context.Context, update func(*translate.Resources, error)) error {
	log := p.opts.Logger
	kinds, err := p.register(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	cacheCtx, stopCache := context.WithCancel(ctx)
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- p.cache.Start(cacheCtx) }()
	defer func() {
		stopCache()
		<-cacheDone
	}()
	log.Info("waiting for the informer caches to sync")
	if !p.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("the informer caches did not sync")
	}
	log.Info("informer caches synced")

	for {
		drain(p.poke)
		res, err := p.snapshot(ctx, kinds)
		if ctx.Err() != nil {
			return nil
		}
		update(res, err)
		select {
		case <-ctx.Done():
			return nil
		case <-p.poke:
		}
		t := time.NewTimer(p.opts.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// register asks the cache for an informer of every kind and installs the change handler.
// An optional kind that the API server does not serve is left out; other errors (the API
// server cannot be reached yet) are retried with backoff until ctx is done.
func (p *Provider) register(ctx context.Context) ([]watchedKind, error) {
	log := p.opts.Logger
	var kinds []watchedKind
	pending := watchedKinds()
	backoff := 500 * time.Millisecond
	for len(pending) > 0 {
		var retry []watchedKind
		for i, k := range pending {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			inf, err := p.cache.GetInformer(ctx, k.obj, cache.BlockUntilSynced(false))
			switch {
			case err == nil:
				if _, err := inf.AddEventHandler(p.handler(k)); err != nil {
					return nil, fmt.Errorf("watching %s: %w", k.name, err)
				}
				kinds = append(kinds, k)
				continue
			case meta.IsNoMatchError(err) && k.optional:
				log.Warn("the API server does not serve this kind (is its CRD installed?); it is ignored until sluice restarts",
					"kind", k.name, "error", err)
				continue
			case meta.IsNoMatchError(err):
				return nil, fmt.Errorf("watching %s: the API server does not serve it (are the Gateway API CRDs installed?): %w", k.name, err)
			}
			// The API server cannot be reached (yet): try this kind and the rest later.
			log.Warn("cannot reach the API server yet; retrying", "kind", k.name, "error", err, "retry_in", backoff.String())
			retry = pending[i:]
			break
		}
		pending = retry
		if len(pending) == 0 {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return kinds, nil
}

// handler signals a change for every add, delete and relevant update of kind k.
func (p *Provider) handler(k watchedKind) toolscache.ResourceEventHandler {
	signal := func() {
		select {
		case p.poke <- struct{}{}:
		default:
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		DeleteFunc: func(any) { signal() },
		UpdateFunc: func(oldObj, newObj any) {
			if k.hasStatus && statusOnly(oldObj, newObj) {
				return
			}
			signal()
		},
	}
}

// statusOnly reports whether an update left an object's spec (its generation), labels
// and annotations unchanged.
func statusOnly(oldObj, newObj any) bool {
	o, ok1 := oldObj.(client.Object)
	n, ok2 := newObj.(client.Object)
	if !ok1 || !ok2 {
		return false
	}
	return o.GetGeneration() == n.GetGeneration() &&
		maps.Equal(o.GetLabels(), n.GetLabels()) &&
		maps.Equal(o.GetAnnotations(), n.GetAnnotations()) &&
		o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
}

// snapshot lists every watched kind from the cache into one Resources value.
func (p *Provider) snapshot(ctx context.Context, kinds []watchedKind) (*translate.Resources, error) {
	res := &translate.Resources{}
	var errs []error
	for _, k := range kinds {
		if err := k.collect(ctx, p.cache, res); err != nil {
			errs = append(errs, fmt.Errorf("listing %s from the cache: %w", k.name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}
