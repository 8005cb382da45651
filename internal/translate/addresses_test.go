package translate_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// poolGateway is a Gateway with one HTTP listener on port 80 without hostname, created
// age seconds before the epoch used by every test here (older Gateways claim first).
func poolGateway(name string, age int, addrs ...gwv1.GatewaySpecAddress) *gwv1.Gateway {
	return &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(time.Unix(1e9-int64(age), 0))},
		Spec: gwv1.GatewaySpec{
			GatewayClassName: "sluice",
			Addresses:        addrs,
			Listeners:        []gwv1.Listener{{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType}},
		},
	}
}

func ipAddr(v string) gwv1.GatewaySpecAddress {
	return gwv1.GatewaySpecAddress{Type: ptrTo(gwv1.IPAddressType), Value: v}
}

func ptrTo[T any](v T) *T { return &v }

// gatewayOutcome summarises what a user sees of a Gateway: its status addresses and
// its Accepted and Programmed reasons.
func gatewayOutcome(st *gwv1.GatewayStatus) string {
	if st == nil {
		return "no status"
	}
	var addrs []string
	for _, a := range st.Addresses {
		addrs = append(addrs, a.Value)
	}
	var conds []string
	for _, c := range st.Conditions {
		if c.Type == string(gwv1.GatewayConditionAccepted) || c.Type == string(gwv1.GatewayConditionProgrammed) {
			conds = append(conds, fmt.Sprintf("%s=%s", c.Type, c.Reason))
		}
	}
	return fmt.Sprintf("[%s] %s", strings.Join(addrs, " "), strings.Join(conds, " "))
}

func TestAddressPool(t *testing.T) {
	t.Parallel()
	pool := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.10")}
	ok := "Accepted=Accepted Programmed=Programmed"
	tests := []struct {
		name     string
		pool     []netip.Addr
		sticky   map[string][]string
		gateways []*gwv1.Gateway
		want     map[string]string // gateway name -> outcome
		sockets  []string          // the data plane's sockets
	}{
		{
			name:     "without a pool, the listeners of two Gateways on one port conflict",
			gateways: []*gwv1.Gateway{poolGateway("a", 2), poolGateway("b", 1)},
			want: map[string]string{
				"a": "[] " + ok,
				"b": "[] Accepted=ListenersNotValid Programmed=Invalid",
			},
			sockets: []string{":80"},
		},
		{
			name:     "with a pool, each Gateway has an address, oldest first",
			pool:     pool,
			gateways: []*gwv1.Gateway{poolGateway("young", 1), poolGateway("old", 2)},
			want: map[string]string{
				"old":   "[10.0.0.2] " + ok,
				"young": "[10.0.0.3] " + ok,
			},
			sockets: []string{"10.0.0.2:80", "10.0.0.3:80"},
		},
		{
			name:     "a Gateway keeps its address when an older one appears",
			pool:     pool,
			sticky:   map[string][]string{"young": {"10.0.0.2"}},
			gateways: []*gwv1.Gateway{poolGateway("young", 1), poolGateway("old", 2)},
			want: map[string]string{
				"old":   "[10.0.0.3] " + ok,
				"young": "[10.0.0.2] " + ok,
			},
			sockets: []string{"10.0.0.2:80", "10.0.0.3:80"},
		},
		{
			name:     "a requested address wins over a held one",
			pool:     pool,
			sticky:   map[string][]string{"holder": {"10.0.0.3"}},
			gateways: []*gwv1.Gateway{poolGateway("holder", 2), poolGateway("asker", 1, ipAddr("10.0.0.3"))},
			want: map[string]string{
				"asker":  "[10.0.0.3] " + ok,
				"holder": "[10.0.0.2] " + ok,
			},
			sockets: []string{"10.0.0.2:80", "10.0.0.3:80"},
		},
		{
			name: "requested: unsupported type, not in the pool, not an IP, taken, empty value",
			pool: pool,
			gateways: []*gwv1.Gateway{
				poolGateway("hostname", 6, gwv1.GatewaySpecAddress{Type: ptrTo(gwv1.HostnameAddressType), Value: "gw.example.com"}),
				poolGateway("outside", 5, ipAddr("192.0.2.1")),
				poolGateway("garbage", 4, ipAddr("not-an-ip")),
				poolGateway("first", 3, ipAddr("10.0.0.10")),
				poolGateway("second", 2, ipAddr("10.0.0.10")),
				poolGateway("any", 1, ipAddr("")),
			},
			want: map[string]string{
				"hostname": "[] Accepted=UnsupportedAddress Programmed=Invalid",
				"outside":  "[] Accepted=Accepted Programmed=AddressNotUsable",
				"garbage":  "[] Accepted=Accepted Programmed=AddressNotUsable",
				"first":    "[10.0.0.10] " + ok,
				"second":   "[] Accepted=Accepted Programmed=AddressNotUsable",
				"any":      "[10.0.0.2] " + ok,
			},
			sockets: []string{"10.0.0.2:80", "10.0.0.10:80"},
		},
		{
			name:     "an exhausted pool leaves the youngest Gateway unassigned",
			pool:     pool[:1],
			gateways: []*gwv1.Gateway{poolGateway("a", 2), poolGateway("b", 1)},
			want: map[string]string{
				"a": "[10.0.0.2] " + ok,
				"b": "[] Accepted=Accepted Programmed=AddressNotAssigned",
			},
			sockets: []string{"10.0.0.2:80"},
		},
		{
			name:     "without a pool, requesting an address is unsupported",
			gateways: []*gwv1.Gateway{poolGateway("a", 1, ipAddr("10.0.0.2"))},
			want:     map[string]string{"a": "[] Accepted=UnsupportedAddress Programmed=Invalid"},
			sockets:  nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := translate.Options{AllGatewayClasses: true, AddressPool: tc.pool}
			if tc.sticky != nil {
				opts.StickyAddresses = map[types.NamespacedName][]netip.Addr{}
				for name, as := range tc.sticky {
					for _, a := range as {
						k := types.NamespacedName{Namespace: "default", Name: name}
						opts.StickyAddresses[k] = append(opts.StickyAddresses[k], netip.MustParseAddr(a))
					}
				}
			}
			res := translate.Translate(&translate.Resources{Gateways: tc.gateways}, opts)
			for name, want := range tc.want {
				got := gatewayOutcome(res.Gateways[types.NamespacedName{Namespace: "default", Name: name}])
				if got != want {
					t.Errorf("Gateway %s: got %s, want %s", name, got, want)
				}
			}
			var sockets []string
			for _, p := range res.Config.Ports {
				sockets = append(sockets, p.Key().String())
			}
			if fmt.Sprint(sockets) != fmt.Sprint(tc.sockets) {
				t.Errorf("sockets: got %v, want %v", sockets, tc.sockets)
			}
		})
	}
}

// TestAddressPoolStatusHolds checks that a Gateway whose status reports a pool address
// keeps it after a restart (no sticky addresses yet), even when an older Gateway needs
// one.
func TestAddressPoolStatusHolds(t *testing.T) {
	t.Parallel()
	young := poolGateway("young", 1)
	young.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: ptrTo(gwv1.IPAddressType), Value: "10.0.0.2"}}
	res := translate.Translate(&translate.Resources{Gateways: []*gwv1.Gateway{young, poolGateway("old", 2)}},
		translate.Options{AllGatewayClasses: true, AddressPool: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}})
	got := map[string]string{}
	for k, as := range res.Addresses {
		got[k.Name] = fmt.Sprint(as)
	}
	want := map[string]string{"young": "[10.0.0.2]", "old": "[10.0.0.3]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("addresses: got %v, want %v", got, want)
	}
}

// TestParametersRefRejected checks that a Gateway asking for infrastructure parameters
// is not accepted (Sluice has no parameters kind), while its labels alone are fine.
func TestParametersRefRejected(t *testing.T) {
	t.Parallel()
	withRef := poolGateway("with-ref", 2)
	withRef.Spec.Infrastructure = &gwv1.GatewayInfrastructure{ParametersRef: &gwv1.LocalParametersReference{Group: "", Kind: "ConfigMap", Name: "params"}}
	labelsOnly := poolGateway("labels-only", 1)
	labelsOnly.Spec.Infrastructure = &gwv1.GatewayInfrastructure{Labels: map[gwv1.LabelKey]gwv1.LabelValue{"team": "a"}}
	res := translate.Translate(&translate.Resources{Gateways: []*gwv1.Gateway{withRef, labelsOnly}}, translate.Options{AllGatewayClasses: true})
	if got := gatewayOutcome(res.Gateways[types.NamespacedName{Namespace: "default", Name: "with-ref"}]); got != "[] Accepted=InvalidParameters Programmed=Invalid" {
		t.Errorf("with a parametersRef: %s", got)
	}
	if got := gatewayOutcome(res.Gateways[types.NamespacedName{Namespace: "default", Name: "labels-only"}]); got != "[] Accepted=Accepted Programmed=Programmed" {
		t.Errorf("with labels only: %s", got)
	}
}
