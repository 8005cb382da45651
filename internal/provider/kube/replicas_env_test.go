package kube

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestStatusFollowsLeadership runs two replicas (provider, translator and status writer
// each, under leader election): the leader writes status; once it is stopped, the other
// replica writes the status of a later change.
func TestStatusFollowsLeadership(t *testing.T) {
	cfg := apiServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(ctx, t, c, "replicas")
	const class = "sluice-replicas"
	gc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Spec: gwv1.GatewayClassSpec{ControllerName: testController}}
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"},
		Spec: gwv1.GatewaySpec{GatewayClassName: class, Listeners: []gwv1.Listener{
			{Name: "a", Port: 18091, Protocol: gwv1.HTTPProtocolType},
		}}}
	for _, o := range []client.Object{gc, gw} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Delete(ctx, gc)
	})

	type replica struct {
		stop context.CancelFunc
		done chan struct{}
	}
	start := func(id string) replica {
		rt, err := NewRuntime(cfg, RuntimeOptions{
			Namespace: ns, ControllerName: testController, LeaderElect: true,
			Leader: LeaderOptions{Namespace: ns, Name: "sluice", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond},
			Logger: quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		r := replica{stop: stop, done: make(chan struct{})}
		errs := make(chan error, 2)
		go func() {
			errs <- rt.Provider.Run(rctx, func(res *translate.Resources, err error) {
				if err == nil {
					rt.Status.OnResult(translate.Translate(res, translate.Options{ControllerName: testController}))
				}
			})
		}()
		go func() { errs <- rt.RunStatus(rctx) }()
		go func() {
			defer close(r.done)
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("replica %s: %v", id, err)
				}
			}
		}()
		t.Cleanup(func() {
			stop()
			<-r.done
		})
		return r
	}
	replicas := map[string]replica{"r1": start("r1"), "r2": start("r2")}

	key := types.NamespacedName{Namespace: ns, Name: "gw"}
	programmed := func(gen int64, listeners int) func() bool {
		return func() bool {
			var got gwv1.Gateway
			if err := c.Get(ctx, key, &got); err != nil {
				return false
			}
			cnd := meta.FindStatusCondition(got.Status.Conditions, string(gwv1.GatewayConditionProgrammed))
			return cnd != nil && cnd.Status == metav1.ConditionTrue && cnd.ObservedGeneration == gen && len(got.Status.Listeners) == listeners
		}
	}
	eventually(t, 30*time.Second, "the leader to write the Gateway's status", programmed(1, 1))

	var lease coordinationv1.Lease
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sluice"}, &lease); err != nil {
		t.Fatalf("reading the Lease: %v", err)
	}
	leader := holder(&lease)
	r, ok := replicas[leader]
	if !ok {
		t.Fatalf("the Lease is held by %q", leader)
	}
	r.stop()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not stop", leader)
	}

	if err := c.Get(ctx, key, gw); err != nil {
		t.Fatal(err)
	}
	gw.Spec.Listeners = append(gw.Spec.Listeners, gwv1.Listener{Name: "b", Port: 18092, Protocol: gwv1.HTTPProtocolType})
	if err := c.Update(ctx, gw); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the other replica to write the edited Gateway's status", programmed(gw.Generation, 2))
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sluice"}, &lease); err != nil {
		t.Fatal(err)
	}
	if now := holder(&lease); now == leader {
		t.Errorf("the Lease is still held by the stopped replica %s", now)
	}
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
