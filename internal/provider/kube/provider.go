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
	// OnStatusChange, when set, is called after an update that changed only the status
	// of a kind Sluice writes status on (such an update does not cause a translation).
	// The status writer uses it to restore a status someone else overwrote. It must not
	// block.
	OnStatusChange func()
	// CRDRecheck is how often the API server is asked again for an optional kind it did
	// not serve (its CRD was not installed), so that a CRD installed later is watched
	// without a restart. Default DefaultCRDRecheck.
	CRDRecheck time.Duration
}

// DefaultCRDRecheck is how often a missing optional CRD is looked for again.
const DefaultCRDRecheck = 30 * time.Second

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
	if o.CRDRecheck <= 0 {
		o.CRDRecheck = DefaultCRDRecheck
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
	kinds, missing, err := p.register(ctx)
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

	var recheck <-chan time.Time
	if len(missing) > 0 {
		tick := time.NewTicker(p.opts.CRDRecheck)
		defer tick.Stop()
		recheck = tick.C
	}
	for {
		drain(p.poke)
		res, err := p.snapshot(ctx, kinds)
		if ctx.Err() != nil {
			return nil
		}
		if res != nil {
			log.Debug("translating a snapshot of the cache", "gateways", len(res.Gateways), "httpRoutes", len(res.HTTPRoutes),
				"referenceGrants", len(res.ReferenceGrants), "services", len(res.Services))
		}
		update(res, err)
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-p.poke:
				break wait
			case <-recheck:
				var found []watchedKind
				found, missing = p.watchMissing(ctx, missing)
				if len(missing) == 0 {
					recheck = nil
				}
				if len(found) > 0 {
					kinds = append(kinds, found...)
					break wait
				}
			}
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
// An optional kind that the API server does not serve is returned in missing; other
// errors (the API server cannot be reached yet) are retried with backoff until ctx is
// done.
func (p *Provider) register(ctx context.Context) (kinds, missing []watchedKind, err error) {
	log := p.opts.Logger
	pending := watchedKinds()
	backoff := 500 * time.Millisecond
	for len(pending) > 0 {
		var retry []watchedKind
		for i, k := range pending {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			err := p.watch(ctx, k, false)
			switch {
			case err == nil:
				kinds = append(kinds, k)
				continue
			case meta.IsNoMatchError(err) && k.optional:
				log.Warn("the API server does not serve this kind (is its CRD installed?); it is ignored until its CRD appears",
					"kind", k.name, "recheck_every", p.opts.CRDRecheck.String(), "error", err)
				missing = append(missing, k)
				continue
			case meta.IsNoMatchError(err):
				return nil, nil, fmt.Errorf("watching %s: the API server does not serve it (are the Gateway API CRDs installed?): %w", k.name, err)
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
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return kinds, missing, nil
}

// watch gets the cache's informer of kind k and installs the change handler; with
// synced it also waits until the informer has synced, so that the next snapshot holds
// every object of the kind.
func (p *Provider) watch(ctx context.Context, k watchedKind, synced bool) error {
	inf, err := p.cache.GetInformer(ctx, k.obj, cache.BlockUntilSynced(synced))
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(p.handler(k)); err != nil {
		return fmt.Errorf("watching %s: %w", k.name, err)
	}
	return nil
}

// watchMissing asks again for the optional kinds the API server did not serve, and
// returns those it now watches (their informers synced) and those still missing.
func (p *Provider) watchMissing(ctx context.Context, missing []watchedKind) (found, still []watchedKind) {
	for _, k := range missing {
		switch err := p.watch(ctx, k, true); {
		case err == nil:
			p.opts.Logger.Info("the API server serves this kind now; watching it", "kind", k.name)
			found = append(found, k)
		case meta.IsNoMatchError(err) || ctx.Err() != nil:
			still = append(still, k)
		default:
			p.opts.Logger.Warn("looking for a CRD failed; retrying later", "kind", k.name, "error", err)
			still = append(still, k)
		}
	}
	return found, still
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
		AddFunc: func(any) { signal() },
		DeleteFunc: func(o any) {
			if obj, ok := o.(client.Object); ok {
				p.opts.Logger.Debug("deleted", "kind", k.name, "object", obj.GetNamespace()+"/"+obj.GetName())
			}
			signal()
		},
		UpdateFunc: func(oldObj, newObj any) {
			if k.hasStatus && statusOnly(oldObj, newObj) {
				if p.opts.OnStatusChange != nil {
					p.opts.OnStatusChange()
				}
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
