package main

import (
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var out, errOut strings.Builder
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matchs: []
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: b, namespace: shop}
spec: {endpoints: [{host: 127.0.0.1, port: 99999}]}
`), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"valid example", []string{"validate", "--config", "../../examples/extproc"}, 0,
			[]string{"valid: 1 Gateway, 1 HTTPRoute, 2 Backends, 1 TrafficPolicy; serving 1 port, 1 listener, 1 route"}},
		{"basic example", []string{"validate", "--config", "../../examples/basic/basic.yaml"}, 0, []string{"valid:"}},
		{"gRPC example", []string{"validate", "--config", "../../examples/grpc"}, 0,
			[]string{"valid: 1 Gateway, 0 HTTPRoutes, 1 GRPCRoute, 1 Backend, 1 TrafficPolicy; serving 1 port, 1 listener, 2 routes"}},
		{"status", []string{"validate", "--status", "--config", "../../examples/extproc"}, 0, []string{
			"Gateway default/agentgateway-proxy: Accepted=True (Accepted), Programmed=True (Programmed)",
			"listener http: attachedRoutes=1",
			"HTTPRoute default/httpbin:\n  parent agentgateway-proxy: Accepted=True (Accepted), ResolvedRefs=True (ResolvedRefs)",
			"TrafficPolicy default/extproc:\n  ancestor Gateway agentgateway-proxy: Accepted=True (Accepted)",
		}},
		{"invalid", []string{"validate", "--config", bad}, 1, []string{
			bad + "#1 (HTTPRoute default/web): spec.rules[0].matchs: unknown field",
			bad + "#2 (Backend shop/b): spec.endpoints[0].port",
			"invalid: 2 error(s)",
		}},
		{"missing file", []string{"validate", "--config", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.name, code, tc.code, out, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, out)
			}
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	t.Parallel()
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "sluice ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := runCLI("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("run"); code != 1 || !strings.Contains(errOut, "--config is required") {
		t.Errorf("run without --config: %d %q", code, errOut)
	}
}

// TestExampleMatchesDemo keeps examples/extproc identical to what the demo serves.
func TestExampleMatchesDemo(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI("demo", "--print-config")
	if code != 0 {
		t.Fatalf("demo --print-config: %d %s", code, errOut)
	}
	file, err := os.ReadFile("../../examples/extproc/extproc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != out {
		t.Errorf("examples/extproc/extproc.yaml differs from `sluice demo --print-config`; regenerate it with:\n  go run ./cmd/sluice demo --print-config > examples/extproc/extproc.yaml")
	}
}

// TestAdminDefaults: the admin listener binds loopback unless told otherwise, and the
// profiler is off, for every command that serves.
func TestAdminDefaults(t *testing.T) {
	t.Parallel()
	var sf serveFlags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	sf.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(sf.adminAddr)
	if err != nil {
		t.Fatalf("--admin-addr default %q: %v", sf.adminAddr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("--admin-addr default %q is not a loopback address", sf.adminAddr)
	}
	if sf.adminPprof {
		t.Error("--admin-pprof is on by default")
	}
	o, err := sf.options(io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.AdminAddr != sf.adminAddr || o.AdminPprof {
		t.Errorf("options: admin %q pprof %v", o.AdminAddr, o.AdminPprof)
	}
}
