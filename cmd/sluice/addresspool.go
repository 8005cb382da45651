package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxPoolSize bounds an address pool: a Gateway per address, and a typo such as a /8
// must not allocate millions of entries.
const maxPoolSize = 4096

// parseAddressPool reads the values of --address-pool: each a comma-separated list of
// IP addresses, ranges ("10.0.0.2-10.0.0.9") and prefixes ("10.0.0.0/28", every address
// of it). The pool keeps the order given and refuses duplicates.
func parseAddressPool(values []string) ([]netip.Addr, error) {
	var pool []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr, item string) error {
		a = a.Unmap()
		if seen[a] {
			return fmt.Errorf("--address-pool: %s is listed twice (in %q)", a, item)
		}
		if len(pool) == maxPoolSize {
			return fmt.Errorf("--address-pool: more than %d addresses", maxPoolSize)
		}
		seen[a] = true
		pool = append(pool, a)
		return nil
	}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			first, last, err := addressRange(item)
			if err != nil {
				return nil, fmt.Errorf("--address-pool: %q: %w", item, err)
			}
			for a := first; ; a = a.Next() {
				if err := add(a, item); err != nil {
					return nil, err
				}
				if a == last {
					break
				}
			}
		}
	}
	return pool, nil
}

// addressRange returns the first and last address of one pool item.
func addressRange(item string) (first, last netip.Addr, err error) {
	switch {
	case strings.Contains(item, "/"):
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return first, last, fmt.Errorf("expected an address, a range a-b or a prefix: %w", err)
		}
		p = p.Masked()
		first = p.Addr()
		bits := first.BitLen() - p.Bits()
		if bits > 12 {
			return first, last, fmt.Errorf("prefix holds more than %d addresses", maxPoolSize)
		}
		last = first
		for range (1 << bits) - 1 {
			last = last.Next()
		}
		return first, last, nil
	case strings.Contains(item, "-"):
		a, b, _ := strings.Cut(item, "-")
		if first, err = netip.ParseAddr(strings.TrimSpace(a)); err != nil {
			return first, last, fmt.Errorf("range start: %w", err)
		}
		if last, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil {
			return first, last, fmt.Errorf("range end: %w", err)
		}
		if first.Is4() != last.Is4() || last.Less(first) {
			return first, last, fmt.Errorf("range end %s is before its start %s or of another family", last, first)
		}
		return first, last, nil
	default:
		a, err := netip.ParseAddr(item)
		if err != nil {
			return a, a, fmt.Errorf("expected an address, a range a-b or a prefix: %w", err)
		}
		return a, a, nil
	}
}
