package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// upstream is an HTTP server on loopback that answers with its name.
func upstream(t *testing.T, name string) (host string, port int32) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	h, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return h, int32(n)
}

// TestRuntimeServesAGatewayOfTheAPIServer runs what `sluice kube` runs (app.Run with the
// Kubernetes source, the status writer under leader election) and sends real requests
// through a Gateway created in the API server; a Backend edit reroutes them live. The
// runtime reaches the API server through a proxy that then cuts it off: the last
// configuration keeps serving, and once the API server is back, edits made meanwhile
// arrive.
func TestRuntimeServesAGatewayOfTheAPIServer(t *testing.T) {
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
	ns := newNamespace(ctx, t, c, "serve")
	const class = "sluice-serve"
	port := freePort(t)
	h1, p1 := upstream(t, "one")
	h2, p2 := upstream(t, "two")
	backend := &v1alpha1.Backend{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: v1alpha1.BackendSpec{Endpoints: []v1alpha1.BackendEndpoint{{Host: h1, Port: p1}}}}
	objs := []client.Object{
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Spec: gwv1.GatewayClassSpec{ControllerName: testController}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"},
			Spec: gwv1.GatewaySpec{GatewayClassName: class, Listeners: []gwv1.Listener{
				{Name: "http", Port: gwv1.PortNumber(port), Protocol: gwv1.HTTPProtocolType},
			}}},
		backend,
		&gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "route"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}},
				Hostnames:       []gwv1.Hostname{"www.example.com"},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{
						Group: ptrTo[gwv1.Group](v1alpha1.Group), Kind: ptrTo[gwv1.Kind]("Backend"), Name: "app"}}}}}},
			}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Delete(ctx, objs[0])
	})

	apiURL, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, apiURL.Host)
	viaProxy := rest.CopyConfig(cfg)
	viaProxy.Host = "https://" + proxy.Addr()
	rt, err := NewRuntime(viaProxy, RuntimeOptions{
		Namespace: ns, ControllerName: testController, Addresses: []string{"192.0.2.20"},
		LeaderElect: true,
		Leader:      LeaderOptions{Namespace: ns, Name: "sluice", LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond},
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan struct{})
	appDone := make(chan error, 1)
	statusDone := make(chan error, 1)
	go func() { statusDone <- rt.RunStatus(runCtx) }()
	go func() {
		appDone <- app.Run(runCtx, app.Options{
			Source: rt.Provider, PartialConfig: true, OnResult: rt.Status.OnResult,
			Translate:   translate.Options{ControllerName: testController},
			BindAddress: "127.0.0.1", DrainTimeout: 2 * time.Second, Logger: quietLogger(),
			Ready: func(map[int32]net.Addr, net.Addr) { close(ready) },
		})
	}()
	defer func() {
		stop()
		if err := receiveErr(t, appDone, 30*time.Second); err != nil {
			t.Errorf("app.Run: %v", err)
		}
		if err := receiveErr(t, statusDone, 30*time.Second); err != nil {
			t.Errorf("status: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-appDone:
		appDone <- err
		t.Fatalf("app.Run stopped before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not serving after 30s")
	}

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "www.example.com"
		resp, err := hc.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if got := get(); got != "200 one" {
		t.Fatalf("GET through the Gateway: %q, want \"200 one\"", got)
	}

	// The leader writes the Gateway's status, with the address given.
	eventually(t, 20*time.Second, "the Gateway programmed in its status", func() bool {
		var gw gwv1.Gateway
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw"}, &gw); err != nil {
			return false
		}
		return meta.IsStatusConditionTrue(gw.Status.Conditions, string(gwv1.GatewayConditionProgrammed)) &&
			len(gw.Status.Addresses) == 1 && gw.Status.Addresses[0].Value == "192.0.2.20"
	})

	// Someone else overwrites the Gateway's status: the leader restores it without
	// waiting for a new translation.
	eventually(t, 20*time.Second, "the Gateway status overwritten", func() bool {
		var gw gwv1.Gateway
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw"}, &gw); err != nil {
			return false
		}
		gw.Status = gwv1.GatewayStatus{}
		return c.Status().Update(ctx, &gw) == nil
	})
	eventually(t, 20*time.Second, "the overwritten Gateway status restored", func() bool {
		var gw gwv1.Gateway
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gw"}, &gw); err != nil {
			return false
		}
		return meta.IsStatusConditionTrue(gw.Status.Conditions, string(gwv1.GatewayConditionProgrammed)) &&
			len(gw.Status.Addresses) == 1 && gw.Status.Addresses[0].Value == "192.0.2.20"
	})

	// A Backend edit reroutes traffic without a restart.
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app"}, backend); err != nil {
		t.Fatal(err)
	}
	backend.Spec.Endpoints = []v1alpha1.BackendEndpoint{{Host: h2, Port: p2}}
	if err := c.Update(ctx, backend); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "requests to reach the edited Backend", func() bool { return get() == "200 two" })

	// The API server goes away: the last configuration keeps serving.
	proxy.cut()
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "app"}, backend); err != nil {
		t.Fatal(err)
	}
	backend.Spec.Endpoints = []v1alpha1.BackendEndpoint{{Host: h1, Port: p1}}
	if err := c.Update(ctx, backend); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if got := get(); got != "200 two" {
			t.Fatalf("with the API server gone: %q, want the last configuration's \"200 two\"", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// It comes back: the edit made meanwhile arrives.
	proxy.resume()
	eventually(t, 60*time.Second, "the edit made while the API server was away", func() bool { return get() == "200 one" })
}
