package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestAddressPool runs `sluice kube --address-pool` with two Gateways whose listeners
// would conflict on one address (same port, no hostname): each gets a loopback address
// of its own, reported in its status and serving its own routes; a third Gateway finds
// the pool exhausted and is not programmed until the first is deleted, and then takes
// its address.
func TestAddressPool(t *testing.T) {
	dir := assetsDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("no %s in %s: run hack/testenv/build.sh (or set KUBEBUILDER_ASSETS) to run the end-to-end test", b, dir)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root := repoRoot(t)
	bin := buildSluice(ctx, t, root)
	kubeconfig, c := startAPIServer(t, dir, root)

	pool := []string{"127.0.0.4", "127.0.0.5"}
	port := freePort(t, pool...)
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
	p := startProcess(t, "sluice", bin, "kube", "--kubeconfig", kubeconfig, "--admin-addr", admin,
		"--address-pool", pool[0]+"-"+pool[1], "--leader-elect=false", "--access-log=false", "--drain-timeout", "1s")
	waitFor(ctx, t, 30*time.Second, "/readyz", func() (bool, string) {
		code, err := getStatus("http://" + admin + "/readyz")
		return code == 200, fmt.Sprintf("status %d, err %v\n%s", code, err, tail(p.out.String(), 2000))
	})

	gateway := func(name string) *gwv1.Gateway {
		return &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: gwv1.GatewaySpec{
			GatewayClassName: "sluice",
			Listeners:        []gwv1.Listener{{Name: "http", Port: gwv1.PortNumber(port), Protocol: gwv1.HTTPProtocolType}}}}
	}
	// Each Gateway's route redirects to a host named after the Gateway: no backend needed
	// to tell which Gateway served a request.
	route := func(gw string) *gwv1.HTTPRoute {
		return &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: gw}, Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(gw)}}},
			Rules: []gwv1.HTTPRouteRule{{Filters: []gwv1.HTTPRouteFilter{{
				Type:            gwv1.HTTPRouteFilterRequestRedirect,
				RequestRedirect: &gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname(gw + ".example.com"))},
			}}}}}}
	}
	objs := []client.Object{
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "sluice"}, Spec: gwv1.GatewayClassSpec{ControllerName: controllerName}},
		gateway("first"), route("first"),
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	// Created in turn so that their ages, and so the order of assignment, are known.
	waitAddress(ctx, t, c, "first", "Programmed", pool[0])
	time.Sleep(1100 * time.Millisecond) // creation timestamps have a resolution of one second
	for _, o := range []client.Object{gateway("second"), route("second")} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	waitAddress(ctx, t, c, "second", "Programmed", pool[1])
	waitRedirect(ctx, t, pool[0], port, "first")
	waitRedirect(ctx, t, pool[1], port, "second")

	time.Sleep(1100 * time.Millisecond)
	for _, o := range []client.Object{gateway("third"), route("third")} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	waitAddress(ctx, t, c, "third", "AddressNotAssigned", "")
	if err := c.Delete(ctx, gateway("first")); err != nil {
		t.Fatal(err)
	}
	waitAddress(ctx, t, c, "third", "Programmed", pool[0])
	waitRedirect(ctx, t, pool[0], port, "third")
	// The second Gateway kept its address throughout.
	waitAddress(ctx, t, c, "second", "Programmed", pool[1])
	waitRedirect(ctx, t, pool[1], port, "second")
}

// waitAddress waits until Gateway name has Programmed with reason and the one status
// address addr (none when addr is empty).
func waitAddress(ctx context.Context, t *testing.T, c client.Client, name, reason, addr string) {
	t.Helper()
	waitFor(ctx, t, 30*time.Second, fmt.Sprintf("Gateway %s Programmed reason %s with address %q", name, reason, addr), func() (bool, string) {
		var gw gwv1.Gateway
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &gw); err != nil {
			return false, err.Error()
		}
		got := ""
		for _, a := range gw.Status.Addresses {
			got += a.Value
		}
		for _, cnd := range gw.Status.Conditions {
			if cnd.Type == "Programmed" && cnd.Reason == reason && cnd.ObservedGeneration == gw.Generation && got == addr {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", gw.Status)
	})
}

// waitRedirect waits until addr:port answers with the redirect of Gateway gw's route.
func waitRedirect(ctx context.Context, t *testing.T, addr string, port int, gw string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	url := "http://" + net.JoinHostPort(addr, strconv.Itoa(port)) + "/"
	// The redirect keeps the listener's port, as the Gateway API prescribes.
	want := "http://" + gw + ".example.com:" + strconv.Itoa(port) + "/"
	waitFor(ctx, t, 20*time.Second, url+" redirecting to "+want, func() (bool, string) {
		resp, err := c.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		c.CloseIdleConnections()
		return resp.StatusCode == http.StatusFound && resp.Header.Get("Location") == want,
			fmt.Sprintf("status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	})
}
