package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// FuzzLoad reads arbitrary bytes as a configuration file, strictly, and translates what
// loaded, as `sluice run` does (internal/app). Nothing may panic, and every complaint must
// say where it is: each load error names the file (and from there the document and
// field), each translation problem the kind, name and origin of its object and a message.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		gateway + "---\n" + route,
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n  stringData: {tls.crt: x, tls.key: y}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: x\n  listeners:\n  - {name: h, port: 70000, protocol: HTTPS, tls: {certificateRefs: [{name: nope}]}}\n",
		"apiVersion: gateway.sluice.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n  extProc: {backendRef: {name: x}}\n",
		"---\n- 1\n---\n{a: [}\n...\n",
		"kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r, name: r}\n",
		gateway + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{method: {type: RegularExpression, service: '^a.b$', method: 'M[a-z]+'}}, {method: {service: a.B}}]\n    backendRefs: [{name: svc, port: 80}]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Load(path)
		for _, e := range flatten(err) {
			if !strings.Contains(e.Error(), path) {
				t.Errorf("load error without the file's name: %v", e)
			}
		}
		if res == nil {
			t.Fatal("Load returned no Resources")
		}
		result := translate.Translate(res, translate.Options{AllGatewayClasses: true})
		for _, p := range result.Problems {
			if p.Kind == "" || p.Name == "" || p.Message == "" || !strings.HasPrefix(p.Origin, path+"#") {
				t.Errorf("problem without its object, origin or message: %+v", p)
			}
			if !strings.Contains(p.Error(), p.Origin) {
				t.Errorf("problem %q does not say where it is", p.Error())
			}
		}
		if result.Config == nil {
			t.Error("Translate returned no Config")
		}
	})
}

// flatten lists the errors errors.Join put together.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
