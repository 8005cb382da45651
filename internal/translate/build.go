package translate

import (
	"net/netip"
	"sort"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// buildConfig assembles the IR from the served listeners and their attached routes:
// listeners merged into ports, routes grouped into virtual hosts, precedence and
// policies applied.
func (t *translator) buildConfig() {
	ports := map[ir.PortKey]*ir.Port{}
	for _, gs := range t.ourGateways {
		if gs.invalid != nil {
			continue
		}
		for _, l := range gs.allListeners() {
			if !l.ready() {
				continue
			}
			l.ir = t.buildListener(l)
			// A Gateway with several addresses serves the same listener on each.
			for _, addr := range gs.bindAddresses() {
				k := ir.PortKey{Address: addr, Number: l.spec.Port}
				p := ports[k]
				if p == nil {
					p = &ir.Port{Address: addr, Number: l.spec.Port, Protocol: l.protocol}
					ports[k] = p
				}
				p.Listeners = append(p.Listeners, l.ir)
			}
		}
	}
	cfg := t.result.Config
	for _, p := range ports {
		sort.Slice(p.Listeners, func(i, j int) bool {
			a, b := p.Listeners[i], p.Listeners[j]
			if a.Hostname != b.Hostname {
				return hostLess(a.Hostname, b.Hostname)
			}
			return a.Name < b.Name
		})
		cfg.Ports = append(cfg.Ports, p)
	}
	sort.Slice(cfg.Ports, func(i, j int) bool {
		a, b := cfg.Ports[i], cfg.Ports[j]
		if a.Number != b.Number {
			return a.Number < b.Number
		}
		return addrLess(a.Address, b.Address)
	})
}

// buildListener makes the IR of one ready listener.
func (t *translator) buildListener(l *listenerState) *ir.Listener {
	out := &ir.Listener{
		Name:             l.name,
		Gateway:          l.gw.key.String(),
		SectionName:      string(l.spec.Name),
		Hostname:         l.hostname,
		Certificates:     l.certs,
		ClientValidation: l.client,
		PreRouting:       t.gatewayExtProc(l.gw, t.preRouting(l)),
		VirtualHosts:     []*ir.VirtualHost{},
	}
	hosts := map[string][]*routeEntry{}
	for _, a := range l.attachments {
		rs := a.route
		if rs.badHostnames != nil {
			continue
		}
		for _, rule := range rs.rules {
			if len(rule.routes) == 0 {
				continue
			}
			ext := t.gatewayExtProc(l.gw, t.postRouting(l, rs, rule))
			for j, tmpl := range rule.routes {
				backends := t.gatewayBackends(l.gw, tmpl.Backends)
				mirrors := t.gatewayMirrors(l.gw, tmpl.Mirrors)
				for _, h := range a.hostnames {
					r := *tmpl
					r.ExtProc = ext
					r.Backends = backends
					r.Mirrors = mirrors
					var gr *grpcRank
					if rk, ok := rule.grpcRanks[tmpl]; ok {
						gr = &rk
					}
					hosts[h] = append(hosts[h], &routeEntry{
						grpc:       gr,
						r:          &r,
						created:    rs.route.CreationTimestamp,
						namespace:  rs.key.Namespace,
						name:       rs.key.Name,
						ruleIndex:  rule.index,
						matchIndex: j,
					})
				}
			}
		}
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sortHostnames(names)
	for _, h := range names {
		entries := hosts[h]
		sort.Slice(entries, func(i, j int) bool { return routeLess(entries[i], entries[j]) })
		vh := &ir.VirtualHost{Hostname: h, Routes: make([]*ir.Route, len(entries))}
		for i, e := range entries {
			vh.Routes[i] = e.r
		}
		out.VirtualHosts = append(out.VirtualHosts, vh)
	}
	return out
}

// addrLess orders IP addresses numerically ("" first), so that 10.0.0.9 comes before
// 10.0.0.10.
func addrLess(a, b string) bool {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	if errX != nil || errY != nil {
		return a < b
	}
	return x.Less(y)
}
