package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/provider/kube"
)

const (
	testenvVersion = "v1.37.2"
	controllerName = "gateway.sluice.dev/controller"
	podIP          = "10.213.0.2"
	hostIP         = "10.213.0.1"
	ns             = "default"
	instructions   = `{"addHeaders":{"extproc":"true"}}`
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// assetsDir is where the control plane binaries are, as in the kube package's tests.
func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	if d := os.Getenv("SLUICE_TESTENV_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "sluice-testenv", testenvVersion)
}

// TestDocumentedExample runs examples/kubernetes end to end: two `sluice kube` replicas,
// httpbin and the sample processor behind Services and EndpointSlices, traffic through
// each replica, status on every object, policy overrides and deletion, and leader
// failover of status writing.
func TestDocumentedExample(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace for the backends")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (`ip`) to create a network namespace for the backends")
	}
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
	netns := backendNamespace(ctx, t)
	startProcess(t, "backends", "ip", "netns", "exec", netns, bin, "demo", "--backends-only",
		"--httpbin-addr", podIP+":8000", "--processor-addr", podIP+":18080")
	waitDial(ctx, t, podIP+":8000")
	waitDial(ctx, t, podIP+":18080")

	// The cluster's view of the backends, as a cluster would have it.
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	h2c := "kubernetes.io/h2c"
	httpProto := "http"
	objs := []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "httpbin"}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(8000), AppProtocol: &httpProto}}}},
		endpointSlice("httpbin", "http", 8000),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ext-proc-grpc"}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "grpc", Port: 4444, TargetPort: intstr.FromInt32(18080), AppProtocol: &h2c}}}},
		endpointSlice("ext-proc-grpc", "grpc", 18080),
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "sluice"}, Spec: gwv1.GatewayClassSpec{ControllerName: controllerName}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agentgateway-proxy"}, Spec: gwv1.GatewaySpec{
			GatewayClassName: "sluice",
			Listeners:        []gwv1.Listener{{Name: "http", Port: gwv1.PortNumber(port), Protocol: gwv1.HTTPProtocolType}}}},
		&gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "httpbin"}, Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "agentgateway-proxy"}}},
			Hostnames:       []gwv1.Hostname{"www.example.com"},
			Rules: []gwv1.HTTPRouteRule{{
				Name:        ptr(gwv1.SectionName("main")),
				BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "httpbin", Port: ptr(gwv1.PortNumber(8000))}}}},
			}}}},
		trafficPolicy("extproc", "Gateway", "agentgateway-proxy", "", map[string]any{
			"backendRef": map[string]any{"name": "ext-proc-grpc", "namespace": ns, "port": int64(4444)}}),
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	// Two replicas, each on a loopback address of its own with the same listener port.
	replicas := []*replica{
		startReplica(t, bin, kubeconfig, "127.0.0.2"),
		startReplica(t, bin, kubeconfig, "127.0.0.3"),
	}
	for _, r := range replicas {
		waitFor(ctx, t, 30*time.Second, r.name+" /readyz", func() (bool, string) {
			code, err := getStatus("http://" + r.admin + "/readyz")
			return code == 200, fmt.Sprintf("status %d, err %v", code, err)
		})
	}

	processed := func(want bool, what string) {
		t.Helper()
		for _, r := range replicas {
			if !r.alive() {
				continue
			}
			waitFor(ctx, t, 20*time.Second, what+" through "+r.name, func() (bool, string) {
				got, ok, detail := extprocHeader(r.bind, port)
				return ok && got == want, detail
			})
		}
	}
	processed(true, `"Extproc": ["true"]`)

	// Status, as the leader writes it.
	key := types.NamespacedName{Namespace: ns, Name: "agentgateway-proxy"}
	waitFor(ctx, t, 20*time.Second, "Gateway Accepted and Programmed with addresses", func() (bool, string) {
		var gw gwv1.Gateway
		if err := c.Get(ctx, key, &gw); err != nil {
			return false, err.Error()
		}
		ok := condTrue(gw.Status.Conditions, "Accepted", gw.Generation) &&
			condTrue(gw.Status.Conditions, "Programmed", gw.Generation) && len(gw.Status.Addresses) > 0 &&
			len(gw.Status.Listeners) == 1 && condTrue(gw.Status.Listeners[0].Conditions, "Programmed", gw.Generation)
		return ok, fmt.Sprintf("%+v", gw.Status)
	})
	waitFor(ctx, t, 20*time.Second, "HTTPRoute parent Accepted and ResolvedRefs", func() (bool, string) {
		var hr gwv1.HTTPRoute
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "httpbin"}, &hr); err != nil {
			return false, err.Error()
		}
		ok := len(hr.Status.Parents) == 1 && string(hr.Status.Parents[0].ControllerName) == controllerName &&
			condTrue(hr.Status.Parents[0].Conditions, "Accepted", hr.Generation) &&
			condTrue(hr.Status.Parents[0].Conditions, "ResolvedRefs", hr.Generation)
		return ok, fmt.Sprintf("%+v", hr.Status)
	})
	waitPolicyAccepted(ctx, t, c, "extproc")

	// A route-level and then a rule-level policy switch the Gateway's processor off;
	// deleting each switches it back on.
	for _, o := range []struct{ name, section string }{{"route-off", ""}, {"rule-off", "main"}} {
		p := trafficPolicy(o.name, "HTTPRoute", "httpbin", o.section, map[string]any{"disabled": true})
		if err := c.Create(ctx, p); err != nil {
			t.Fatalf("creating %s: %v", o.name, err)
		}
		processed(false, "no Extproc header with "+o.name)
		waitPolicyAccepted(ctx, t, c, o.name)
		if err := c.Delete(ctx, p); err != nil {
			t.Fatalf("deleting %s: %v", o.name, err)
		}
		processed(true, "the Extproc header again after deleting "+o.name)
	}

	// Deleting the Gateway's policy stops the processing.
	if err := c.Delete(ctx, trafficPolicy("extproc", "Gateway", "agentgateway-proxy", "", nil)); err != nil {
		t.Fatalf("deleting extproc: %v", err)
	}
	processed(false, "no Extproc header after deleting the policy")

	// Kill the leader (SIGKILL: it cannot release the Lease, so the other replica takes
	// over once the 3s lease runs out) and check that the other one writes the status of
	// the next change.
	var leader, other *replica
	waitFor(ctx, t, 20*time.Second, "a replica to log its election", func() (bool, string) {
		for i, r := range replicas {
			if strings.Contains(r.out.String(), "elected leader") {
				leader, other = r, replicas[1-i]
				return true, ""
			}
		}
		return false, "no replica logged \"elected leader\""
	})
	leader.kill(t)
	var gw gwv1.Gateway
	if err := c.Get(ctx, key, &gw); err != nil {
		t.Fatal(err)
	}
	port2 := freePort(t, "127.0.0.2", "127.0.0.3")
	gw.Spec.Listeners = append(gw.Spec.Listeners, gwv1.Listener{Name: "http2", Port: gwv1.PortNumber(port2), Protocol: gwv1.HTTPProtocolType})
	if err := c.Update(ctx, &gw); err != nil {
		t.Fatalf("adding a listener: %v", err)
	}
	waitFor(ctx, t, 30*time.Second, other.name+" to write the status of the new generation", func() (bool, string) {
		var gw gwv1.Gateway
		if err := c.Get(ctx, key, &gw); err != nil {
			return false, err.Error()
		}
		ok := condTrue(gw.Status.Conditions, "Programmed", gw.Generation) && len(gw.Status.Listeners) == 2
		return ok, fmt.Sprintf("generation %d, %+v", gw.Generation, gw.Status)
	})
	if !strings.Contains(other.out.String(), "elected leader") {
		t.Errorf("%s wrote status without logging its election:\n%s", other.name, other.out.String())
	}
	waitFor(ctx, t, 20*time.Second, "traffic on the new listener through "+other.name, func() (bool, string) {
		got, ok, detail := extprocHeader(other.bind, port2)
		return ok && !got, detail
	})
}

// repoRoot is the directory of the module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("locating the module root: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func buildSluice(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building sluice: %v\n%s", err, out)
	}
	return bin
}

// startAPIServer starts etcd and kube-apiserver with the Gateway API standard CRDs and
// Sluice's CRDs, and returns a kubeconfig file for it and a client.
func startAPIServer(t *testing.T, dir, root string) (string, client.Client) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the Gateway API module for its CRDs: %v", err)
	}
	e := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths: []string{
			filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard"),
			filepath.Join(root, "config", "crd"),
		},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	e.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	cfg, err := e.Start()
	if err != nil {
		_ = e.Stop()
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping the test API server: %v", err)
		}
	})
	user, err := e.AddUser(envtest.User{Name: "sluice-e2e", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatalf("adding a user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("writing a kubeconfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return path, c
}

// backendNamespace creates a network namespace joined to the host by a veth pair:
// EndpointSlices cannot point at loopback, so the backends get an address of their own.
func backendNamespace(ctx context.Context, t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("sl-%d", os.Getpid())
	host, pod := name+"h", name+"p"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() {
		// Deleting the namespace deletes the pod end of the pair, and with it the host end.
		_ = exec.Command("ip", "link", "del", host).Run()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting network namespace %s: %v\n%s", name, err, out)
		}
	})
	run("link", "add", host, "type", "veth", "peer", "name", pod)
	run("link", "set", pod, "netns", name)
	run("addr", "add", hostIP+"/30", "dev", host)
	run("link", "set", host, "up")
	run("-n", name, "addr", "add", podIP+"/30", "dev", pod)
	run("-n", name, "link", "set", pod, "up")
	run("-n", name, "link", "set", "lo", "up")
	return name
}

// syncBuffer is an io.Writer safe for a process's output and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startProcess runs a command until the test ends; its output is logged if the test fails.
func startProcess(t *testing.T, name string, argv ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, tail(p.out.String(), 8000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type replica struct {
	*process
	name, bind, admin string
}

func startReplica(t *testing.T, bin, kubeconfig, bind string) *replica {
	t.Helper()
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
	name := "replica " + bind
	p := startProcess(t, name, bin, "kube", "--kubeconfig", kubeconfig, "--bind-address", bind,
		"--admin-addr", admin, "--gateway-address", bind, "--leader-elect", "--log-level", "info",
		"--leader-election-lease-duration", "3s", "--leader-election-renew-deadline", "2s", "--leader-election-retry-period", "500ms",
		"--access-log=false", "--drain-timeout", "1s")
	return &replica{process: p, name: name, bind: bind, admin: admin}
}

func (r *replica) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits (bounded) for the process to exit.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing %s: %v", r.name, err)
	}
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of SIGKILL", r.name)
	}
}

// freePort returns a TCP port free on every one of the given addresses.
func freePort(t *testing.T, addrs ...string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, a := range addrs[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			_ = l2.Close()
		}
		_ = l.Close()
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", addrs)
	return 0
}

func waitDial(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	waitFor(ctx, t, 15*time.Second, "a listener on "+addr, func() (bool, string) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	})
}

// waitFor polls cond every 100 ms until it holds, timeout passes or ctx is done.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, detail)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getStatus(url string) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// extprocHeader sends the example's request to a replica and reports whether httpbin
// saw "Extproc": ["true"]; ok is false when the request failed or the answer was not a
// 200 with httpbin's JSON.
func extprocHeader(bind string, port int) (got, ok bool, detail string) {
	req, err := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(bind, strconv.Itoa(port))+"/headers", nil)
	if err != nil {
		return false, false, err.Error()
	}
	req.Host = "www.example.com"
	req.Header.Set("instructions", instructions)
	resp, err := httpClient.Do(req)
	if err != nil {
		return false, false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return false, false, fmt.Sprintf("status %d: %s", resp.StatusCode, body)
	}
	var answer struct {
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return false, false, fmt.Sprintf("decoding %s: %v", body, err)
	}
	v := answer.Headers["Extproc"]
	return len(v) == 1 && v[0] == "true", true, string(body)
}

func condTrue(conds []metav1.Condition, typ string, gen int64) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen
}

func waitPolicyAccepted(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	waitFor(ctx, t, 20*time.Second, "TrafficPolicy "+name+" ancestor Accepted", func() (bool, string) {
		p := trafficPolicy(name, "", "", "", nil)
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			if apierrors.IsNotFound(err) {
				return false, "not found"
			}
			return false, err.Error()
		}
		ancestors, _, _ := unstructured.NestedSlice(p.Object, "status", "ancestors")
		if len(ancestors) == 0 {
			return false, "no ancestors"
		}
		for _, a := range ancestors {
			am, _ := a.(map[string]any)
			if am["controllerName"] != controllerName {
				return false, fmt.Sprintf("%v", ancestors)
			}
			conds, _ := am["conditions"].([]any)
			accepted := false
			for _, cd := range conds {
				cm, _ := cd.(map[string]any)
				if cm["type"] == "Accepted" && cm["status"] == "True" && cm["observedGeneration"] == p.GetGeneration() {
					accepted = true
				}
			}
			if !accepted {
				return false, fmt.Sprintf("%v", ancestors)
			}
		}
		return true, ""
	})
}

// trafficPolicy builds a TrafficPolicy targeting one object (kind empty: no spec, for
// Get and Delete) with the given traffic.extProc.
func trafficPolicy(name, kind, target, section string, extProc map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("gateway.sluice.dev/v1alpha1")
	u.SetKind("TrafficPolicy")
	u.SetNamespace(ns)
	u.SetName(name)
	if kind != "" {
		ref := map[string]any{"group": "gateway.networking.k8s.io", "kind": kind, "name": target}
		if section != "" {
			ref["sectionName"] = section
		}
		u.Object["spec"] = map[string]any{
			"targetRefs": []any{ref},
			"traffic":    map[string]any{"extProc": extProc},
		}
	}
	return u
}

func endpointSlice(service, portName string, port int32) *discoveryv1.EndpointSlice {
	ready := true
	proto := corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service + "-e2e",
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{podIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
}

func ptr[T any](v T) *T { return &v }
