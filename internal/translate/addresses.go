package translate

import (
	"fmt"
	"net/netip"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// validateAddresses checks spec.addresses of Gateway gs. Without an address pool every
// Gateway is served on the addresses Sluice was started with, so requesting addresses is
// not supported. With one, IPAddress entries are: a value asks for that address (it must
// be in the pool), an empty value for any free address of the pool.
func (t *translator) validateAddresses(gs *gatewayState) {
	g := gs.gw
	if len(g.Spec.Addresses) == 0 {
		return
	}
	if len(t.opts.AddressPool) == 0 {
		msg := t.problem(KindGateway, g.Namespace, g.Name, "spec.addresses",
			"not supported: Sluice listens on the addresses it is started with (start it with an address pool to give Gateways addresses of their own)")
		gs.invalidate(string(gwv1.GatewayReasonUnsupportedAddress), msg)
		return
	}
	for i, a := range g.Spec.Addresses {
		if a.Type != nil && *a.Type != gwv1.IPAddressType {
			msg := t.problem(KindGateway, g.Namespace, g.Name, fmt.Sprintf("spec.addresses[%d].type", i),
				fmt.Sprintf("address type %q is not supported, expected %s", *a.Type, gwv1.IPAddressType))
			gs.invalidate(string(gwv1.GatewayReasonUnsupportedAddress), msg)
		}
	}
}

// assignAddresses gives every served Gateway its addresses from Options.AddressPool, so
// that Gateways with the same ports do not conflict. Requested addresses are honoured
// first (oldest Gateway first); then each Gateway keeps the address it had (from
// Options.StickyAddresses, else from its status), so that no Gateway moves when another
// comes or goes; then the rest get the lowest free addresses, oldest Gateway first.
func (t *translator) assignAddresses() {
	pool := t.opts.AddressPool
	if len(pool) == 0 {
		return
	}
	inPool := make(map[netip.Addr]bool, len(pool))
	for _, a := range pool {
		inPool[a.Unmap()] = true
	}
	taken := map[netip.Addr]*gatewayState{}
	need := map[*gatewayState]int{}
	var waiting []*gatewayState
	for _, gs := range t.ourGateways {
		if gs.invalid != nil {
			continue
		}
		g := gs.gw
		if len(g.Spec.Addresses) == 0 {
			need[gs] = 1
			waiting = append(waiting, gs)
			continue
		}
		var mine []netip.Addr
		for i, a := range g.Spec.Addresses {
			field := fmt.Sprintf("spec.addresses[%d].value", i)
			if a.Value == "" {
				need[gs]++
				continue
			}
			ip, err := netip.ParseAddr(a.Value)
			var why string
			switch {
			case err != nil:
				why = fmt.Sprintf("%q is not an IP address", a.Value)
			case !inPool[ip.Unmap()]:
				why = fmt.Sprintf("%s is not in Sluice's address pool", ip)
			case taken[ip.Unmap()] != nil:
				why = fmt.Sprintf("%s is already used by Gateway %s", ip, taken[ip.Unmap()].key)
			}
			if why != "" {
				if gs.noAddress == nil {
					gs.noAddress = &condState{reason: string(gwv1.GatewayReasonAddressNotUsable),
						msg: t.problem(KindGateway, g.Namespace, g.Name, field, why)}
				}
				continue
			}
			mine = append(mine, ip.Unmap())
			taken[ip.Unmap()] = gs
		}
		if gs.noAddress != nil {
			// Not served: its requested addresses stay free for others.
			for _, ip := range mine {
				delete(taken, ip)
			}
			continue
		}
		gs.addresses = mine
		if need[gs] > 0 {
			waiting = append(waiting, gs)
		}
	}
	// Addresses held before: from the last translation, then from the status written.
	for _, gs := range waiting {
		held := append([]netip.Addr(nil), t.opts.StickyAddresses[gs.key]...)
		for _, a := range gs.gw.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Value); err == nil {
				held = append(held, ip.Unmap())
			}
		}
		for _, ip := range held {
			if need[gs] == 0 {
				break
			}
			if inPool[ip] && taken[ip] == nil {
				taken[ip] = gs
				gs.addresses = append(gs.addresses, ip)
				need[gs]--
			}
		}
	}
	next := 0
	for _, gs := range waiting {
		for need[gs] > 0 {
			for next < len(pool) && taken[pool[next].Unmap()] != nil {
				next++
			}
			if next == len(pool) {
				g := gs.gw
				gs.noAddress = &condState{reason: string(gwv1.GatewayReasonAddressNotAssigned),
					msg: t.problem(KindGateway, g.Namespace, g.Name, "",
						fmt.Sprintf("no free address: all %d addresses of Sluice's address pool are in use", len(pool)))}
				break
			}
			ip := pool[next].Unmap()
			taken[ip] = gs
			gs.addresses = append(gs.addresses, ip)
			need[gs]--
		}
		if gs.noAddress != nil {
			for _, ip := range gs.addresses {
				delete(taken, ip)
			}
			gs.addresses = nil
		}
	}
	for _, gs := range t.ourGateways {
		if len(gs.addresses) > 0 {
			t.result.Addresses[gs.key] = gs.addresses
		}
	}
}

// bindAddresses are the addresses the listeners of gs bind: its own, or the data plane's
// default ("") without an address pool.
func (gs *gatewayState) bindAddresses() []string {
	if gs.addresses == nil {
		return []string{""}
	}
	out := make([]string, len(gs.addresses))
	for i, a := range gs.addresses {
		out[i] = a.String()
	}
	return out
}

// statusAddresses are the addresses to report in the Gateway's status.addresses: its
// own with an address pool (possibly none), else nil, leaving the status writer's.
func (t *translator) statusAddresses(gs *gatewayState) []gwv1.GatewayStatusAddress {
	if len(t.opts.AddressPool) == 0 {
		return nil
	}
	out := make([]gwv1.GatewayStatusAddress, 0, len(gs.addresses))
	for _, a := range gs.addresses {
		out = append(out, gwv1.GatewayStatusAddress{Type: ptr(gwv1.IPAddressType), Value: a.String()})
	}
	return out
}

// invalidate marks the Gateway not accepted, keeping the first reason given.
func (gs *gatewayState) invalidate(reason, msg string) {
	if gs.invalid == nil {
		gs.invalid = &condState{reason: reason, msg: msg}
	}
}
