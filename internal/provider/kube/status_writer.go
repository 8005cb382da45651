package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// StatusOptions configure a StatusWriter.
type StatusOptions struct {
	// ControllerName is the controllerName Sluice answers to: GatewayClasses naming it
	// are accepted, and route and policy status entries carrying it are Sluice's own.
	// Default translate.DefaultControllerName.
	ControllerName string
	// Addresses are reported in status.addresses of every Gateway Sluice serves (IP
	// addresses or host names), except those a translation gave addresses of their own
	// (translate.Options.AddressPool). Empty leaves the addresses a Gateway has.
	Addresses []string
	// Gateways, when not empty, are the only Gateways this deployment serves (see
	// translate.Options.Gateways): Sluice's route parent and policy ancestor entries
	// for other Gateways are left to the deployments serving them.
	Gateways []types.NamespacedName
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of lastTransitionTime. Default time.Now.
	Now func() time.Time
}

// StatusWriter writes translation results back as the status of GatewayClasses,
// Gateways, ListenerSets, HTTPRoutes, GRPCRoutes and TrafficPolicies. OnResult may be called on every replica;
// only the replica running Run (the elected leader) writes.
//
// Writes are skipped when the status is already what the translation wants (conditions
// compared without lastTransitionTime, which is kept while a condition's status holds),
// and retried on conflicts, re-reading the object from the API server.
type StatusWriter struct {
	c          client.Client
	r          client.Reader
	controller gwv1.GatewayController
	selection  translate.Options // only Gateways: which entries this writer owns
	addresses  []gwv1.GatewayStatusAddress
	log        *slog.Logger
	now        func() time.Time

	mu     sync.Mutex
	latest *translate.Result
	kick   chan struct{}
}

// NewStatusWriter returns a writer that writes through c and reads current objects from
// r (the provider's cache; c is used instead after a conflict).
func NewStatusWriter(c client.Client, r client.Reader, o StatusOptions) *StatusWriter {
	if o.ControllerName == "" {
		o.ControllerName = translate.DefaultControllerName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &StatusWriter{c: c, r: r, controller: gwv1.GatewayController(o.ControllerName),
		selection: translate.Options{Gateways: o.Gateways},
		log:       o.Logger, now: o.Now, kick: make(chan struct{}, 1)}
	for _, a := range o.Addresses {
		t := gwv1.HostnameAddressType
		if _, err := netip.ParseAddr(a); err == nil {
			t = gwv1.IPAddressType
		}
		w.addresses = append(w.addresses, gwv1.GatewayStatusAddress{Type: &t, Value: a})
	}
	return w
}

// OnResult records the latest translation result for Run. It never blocks, so it can
// be app.Options.OnResult.
func (w *StatusWriter) OnResult(res *translate.Result) {
	w.mu.Lock()
	w.latest = res
	w.mu.Unlock()
	w.Recheck()
}

// Recheck asks Run for another pass over the latest result without a new translation:
// an object's status changed under it (someone else wrote it), and a pass restores
// Sluice's part where it differs. It never blocks, so it can be the provider's
// Options.OnStatusChange. Sluice's own writes come back as such changes too; their pass
// finds nothing to write.
func (w *StatusWriter) Recheck() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run writes the latest result at once, then every new one, until ctx is done. A pass
// that fails (API server unreachable) is retried with backoff, up to 30 s apart, until a
// newer result replaces it. It returns nil when ctx is done.
func (w *StatusWriter) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		w.mu.Lock()
		res := w.latest
		w.mu.Unlock()
		if res != nil {
			n, err := w.Write(ctx, res)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				w.log.Error("writing status failed; retrying", "error", err, "retry_in", backoff.String())
			default:
				backoff = 0
				if n > 0 {
					w.log.Info("status written", "objects", n)
				}
			}
		}
		if !w.wait(ctx, backoff) {
			return nil
		}
	}
}

// wait waits for a new result, or for backoff when it is not zero. It reports false when
// ctx is done.
func (w *StatusWriter) wait(ctx context.Context, backoff time.Duration) bool {
	var retryC <-chan time.Time
	if backoff > 0 {
		t := time.NewTimer(backoff)
		defer t.Stop()
		retryC = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.kick:
	case <-retryC:
	}
	return true
}

// Write brings the status of every object res speaks of up to date, and returns how
// many objects it updated. Objects deleted meanwhile are skipped. Errors of single
// objects do not stop the pass; they are joined.
func (w *StatusWriter) Write(ctx context.Context, res *translate.Result) (int, error) {
	now := metav1.NewTime(w.now().Truncate(time.Second))
	written := 0
	var errs []error
	note := func(wrote bool, err error) {
		if wrote {
			written++
		}
		if err != nil {
			errs = append(errs, err)
		}
	}

	var classes gwv1.GatewayClassList
	if err := w.r.List(ctx, &classes); err != nil {
		errs = append(errs, fmt.Errorf("listing GatewayClasses: %w", err))
	}
	for _, gc := range classes.Items {
		if gc.Spec.ControllerName != w.controller {
			continue
		}
		note(w.update(ctx, "GatewayClass", types.NamespacedName{Name: gc.Name},
			func() client.Object { return &gwv1.GatewayClass{} },
			func(o client.Object) bool {
				gc := o.(*gwv1.GatewayClass)
				if gc.Spec.ControllerName != w.controller {
					return false
				}
				next := gatewayClassStatus(&gc.Status, gc.Generation, translate.SupportedFeatures(), now)
				return setIfChanged(&gc.Status, next)
			}))
	}

	for key, want := range res.Gateways {
		note(w.update(ctx, "Gateway", key,
			func() client.Object { return &gwv1.Gateway{} },
			func(o client.Object) bool {
				gw := o.(*gwv1.Gateway)
				addrs := w.addresses
				if want.Addresses != nil {
					// The Gateway's own addresses, from the address pool.
					addrs = want.Addresses
				}
				return setIfChanged(&gw.Status, gatewayStatus(&gw.Status, want, addrs, now))
			}))
	}

	for key, want := range res.ListenerSets {
		note(w.update(ctx, "ListenerSet", key,
			func() client.Object { return &gwv1.ListenerSet{} },
			func(o client.Object) bool {
				ls := o.(*gwv1.ListenerSet)
				return setIfChanged(&ls.Status, listenerSetStatus(&ls.Status, want, now))
			}))
	}

	// Every route, not only those of res: a route that no longer attaches to a Gateway
	// of ours loses the entries Sluice wrote on it.
	if err := w.writeRoutes(ctx, res, now, "HTTPRoute", &gwv1.HTTPRouteList{},
		func() client.Object { return &gwv1.HTTPRoute{} },
		func(k types.NamespacedName) []gwv1.RouteParentStatus {
			if st := res.HTTPRoutes[k]; st != nil {
				return st.Parents
			}
			return nil
		}, note); err != nil {
		errs = append(errs, err)
	}
	if err := w.writeRoutes(ctx, res, now, "GRPCRoute", &gwv1.GRPCRouteList{},
		func() client.Object { return &gwv1.GRPCRoute{} },
		func(k types.NamespacedName) []gwv1.RouteParentStatus {
			if st := res.GRPCRoutes[k]; st != nil {
				return st.Parents
			}
			return nil
		}, note); err != nil && !meta.IsNoMatchError(err) {
		// No match: the GRPCRoute CRD is not installed, nothing to report.
		errs = append(errs, err)
	}

	var policies v1alpha1.TrafficPolicyList
	err := w.r.List(ctx, &policies)
	switch {
	case meta.IsNoMatchError(err):
		// The TrafficPolicy CRD is not installed: nothing to report.
	case err != nil:
		errs = append(errs, fmt.Errorf("listing TrafficPolicies: %w", err))
	}
	for _, p := range policies.Items {
		key := client.ObjectKeyFromObject(&p)
		var want []gwv1.PolicyAncestorStatus
		if st := res.Policies[key]; st != nil {
			want = st.Ancestors
		}
		if len(want) == 0 && !hasAncestorOf(p.Status.Ancestors, w.controller) {
			continue
		}
		note(w.update(ctx, "TrafficPolicy", key,
			func() client.Object { return &v1alpha1.TrafficPolicy{} },
			func(o client.Object) bool {
				p := o.(*v1alpha1.TrafficPolicy)
				next := policyAncestors(p.Status.Ancestors, want, w.controller, w.owns(res, p.Namespace), now)
				return setIfChanged(&p.Status.Ancestors, next)
			}))
	}
	var btls gwv1.BackendTLSPolicyList
	err = w.r.List(ctx, &btls)
	switch {
	case meta.IsNoMatchError(err):
		// The BackendTLSPolicy CRD is not installed.
	case err != nil:
		errs = append(errs, fmt.Errorf("listing BackendTLSPolicies: %w", err))
	}
	for _, p := range btls.Items {
		key := client.ObjectKeyFromObject(&p)
		var want []gwv1.PolicyAncestorStatus
		if st := res.BackendTLSPolicies[key]; st != nil {
			want = st.Ancestors
		}
		if len(want) == 0 && !hasAncestorOf(p.Status.Ancestors, w.controller) {
			continue
		}
		note(w.update(ctx, "BackendTLSPolicy", key,
			func() client.Object { return &gwv1.BackendTLSPolicy{} },
			func(o client.Object) bool {
				p := o.(*gwv1.BackendTLSPolicy)
				next := policyAncestors(p.Status.Ancestors, want, w.controller, w.owns(res, p.Namespace), now)
				return setIfChanged(&p.Status.Ancestors, next)
			}))
	}
	return written, errors.Join(errs...)
}

// writeRoutes brings Sluice's parent entries on every route of one kind (listed into
// list, new ones from newObj) to want's; note counts each update.
func (w *StatusWriter) writeRoutes(ctx context.Context, res *translate.Result, now metav1.Time, kind string,
	list client.ObjectList, newObj func() client.Object, want func(types.NamespacedName) []gwv1.RouteParentStatus,
	note func(bool, error)) error {
	if err := w.r.List(ctx, list); err != nil {
		return fmt.Errorf("listing %ss: %w", kind, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return fmt.Errorf("listing %ss: %w", kind, err)
	}
	for _, item := range items {
		rt := item.(client.Object)
		key := client.ObjectKeyFromObject(rt)
		parents := want(key)
		if len(parents) == 0 && !hasParentOf(*routeParentsOf(rt), w.controller) {
			continue
		}
		note(w.update(ctx, kind, key, newObj, func(o client.Object) bool {
			cur := routeParentsOf(o)
			next := routeParents(*cur, parents, w.controller, w.owns(res, o.GetNamespace()), now)
			return setIfChanged(cur, next)
		}))
	}
	return nil
}

// routeParentsOf is the status.parents of an HTTPRoute or GRPCRoute.
func routeParentsOf(o client.Object) *[]gwv1.RouteParentStatus {
	switch r := o.(type) {
	case *gwv1.HTTPRoute:
		return &r.Status.Parents
	case *gwv1.GRPCRoute:
		return &r.Status.Parents
	}
	panic(fmt.Sprintf("routeParentsOf(%T)", o))
}

// update reads the object key (from the cache first, from the API server after a
// conflict), lets mutate change its status, and writes the status if mutate reports a
// change. It reports whether it wrote.
func (w *StatusWriter) update(ctx context.Context, kind string, key types.NamespacedName,
	newObj func() client.Object, mutate func(client.Object) bool) (bool, error) {
	wrote := false
	src := w.r
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := newObj()
		if err := src.Get(ctx, key, obj); err != nil {
			return err
		}
		// A conflict means the cache was behind: read the API server from now on.
		src = w.c
		if !mutate(obj) {
			return nil
		}
		if err := w.c.Status().Update(ctx, obj); err != nil {
			return err
		}
		w.log.Debug("status updated", "kind", kind, "object", key.String(), "resourceVersion", obj.GetResourceVersion())
		wrote = true
		return nil
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return wrote, fmt.Errorf("writing the status of %s %s: %w", kind, key, err)
	}
	return wrote, nil
}

// owns returns which status entries of an object in namespace ns this writer owns. An
// entry for a ListenerSet belongs to the deployment serving the ListenerSet's Gateway:
// with a selection of Gateways, this writer owns it when res reports the ListenerSet (it
// does for every ListenerSet whose Gateway is served).
func (w *StatusWriter) owns(res *translate.Result, ns string) func(gwv1.ParentReference) bool {
	return func(ref gwv1.ParentReference) bool {
		if len(w.selection.Gateways) > 0 && ref.Kind != nil && *ref.Kind == translate.KindListenerSet &&
			(ref.Group == nil || *ref.Group == gwv1.GroupName) {
			lsNS := ns
			if ref.Namespace != nil {
				lsNS = string(*ref.Namespace)
			}
			_, ok := res.ListenerSets[types.NamespacedName{Namespace: lsNS, Name: string(ref.Name)}]
			return ok
		}
		return w.selection.Owns(ref, ns)
	}
}

// setIfChanged stores next in *dst unless they are semantically equal, and reports
// whether it did.
func setIfChanged[T any](dst *T, next T) bool {
	if equality.Semantic.DeepEqual(*dst, next) {
		return false
	}
	*dst = next
	return true
}

func hasParentOf(ps []gwv1.RouteParentStatus, c gwv1.GatewayController) bool {
	for _, p := range ps {
		if p.ControllerName == c {
			return true
		}
	}
	return false
}

func hasAncestorOf(as []gwv1.PolicyAncestorStatus, c gwv1.GatewayController) bool {
	for _, a := range as {
		if a.ControllerName == c {
			return true
		}
	}
	return false
}
