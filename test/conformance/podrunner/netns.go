package podrunner

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// ipTimeout bounds every `ip` command: they are local and quick, but a hung netlink call
// must not hang the conformance run.
const ipTimeout = 20 * time.Second

// ip runs one `ip` command and returns its error with the command line and output.
func ip(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipOutput runs one `ip` command and returns its standard output.
func ipOutput(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// bridgeName is the one bridge every pod's veth joins; the host's address on it is the
// node's address, the pods' gateway, and where the harness binds Sluice.
func (r *Runner) bridgeName() string { return r.cfg.Prefix + "br0" }

// podNetName names the network namespace of the pod with the given address, and the
// host end of its veth pair (interface names are limited to 15 bytes, so the name is
// built from the address's last byte, not the pod's name).
func (r *Runner) podNetName(addr netip.Addr) (netns, hostIf, podIf string) {
	last := addr.As4()[3]
	base := fmt.Sprintf("%sp%d", r.cfg.Prefix, last)
	return base, base + "h", base + "c"
}

// setUpBridge creates the bridge with the host's address.
func (r *Runner) setUpBridge(ctx context.Context) error {
	br := r.bridgeName()
	if err := ip(ctx, "link", "add", br, "type", "bridge"); err != nil {
		return err
	}
	bits := r.cfg.Subnet.Bits()
	if err := ip(ctx, "addr", "add", fmt.Sprintf("%s/%d", r.hostIP, bits), "dev", br); err != nil {
		return err
	}
	return ip(ctx, "link", "set", br, "up")
}

// setUpPodNet creates the pod's network namespace with a veth into the bridge, the pod's
// address on it, and a default route through the host.
func (r *Runner) setUpPodNet(ctx context.Context, addr netip.Addr) error {
	netns, hostIf, podIf := r.podNetName(addr)
	// A leftover of a pod that had this address and was not cleaned up would make the
	// first command fail; remove it first (errors ignored: usually there is none).
	r.tearDownPodNet(ctx, addr)
	steps := [][]string{
		{"netns", "add", netns},
		{"link", "add", hostIf, "type", "veth", "peer", "name", podIf},
		{"link", "set", hostIf, "master", r.bridgeName()},
		{"link", "set", hostIf, "up"},
		{"link", "set", podIf, "netns", netns},
		{"-n", netns, "link", "set", podIf, "name", "eth0"},
		{"-n", netns, "addr", "add", fmt.Sprintf("%s/%d", addr, r.cfg.Subnet.Bits()), "dev", "eth0"},
		{"-n", netns, "link", "set", "eth0", "up"},
		{"-n", netns, "link", "set", "lo", "up"},
		{"-n", netns, "route", "add", "default", "via", r.hostIP.String()},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("network of pod address %s: %w", addr, err)
		}
	}
	return nil
}

// tearDownPodNet removes the pod's namespace (which takes the veth pair with it) and the
// host end in case the namespace was already gone. Errors are ignored: either may not
// exist, and teardown is best effort.
func (r *Runner) tearDownPodNet(ctx context.Context, addr netip.Addr) {
	netns, hostIf, _ := r.podNetName(addr)
	_ = ip(ctx, "netns", "del", netns)
	_ = ip(ctx, "link", "del", hostIf)
}

// removeAllNetworkObjects deletes every network namespace and link whose name starts with
// the prefix: this run's, and those a killed earlier run left behind (the run holds the
// prefix's lock file, so no other live run owns them).
func (r *Runner) removeAllNetworkObjects(ctx context.Context) []string {
	var removed []string
	if out, err := ipOutput(ctx, "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], r.cfg.Prefix) {
				if ip(ctx, "netns", "del", f[0]) == nil {
					removed = append(removed, "netns "+f[0])
				}
			}
		}
	}
	if out, err := ipOutput(ctx, "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, r.cfg.Prefix) {
				if ip(ctx, "link", "del", name) == nil {
					removed = append(removed, "link "+name)
				}
			}
		}
	}
	return removed
}

// firstPodHost is the last octet of the first pod address: the host may add addresses
// below it.
const firstPodHost = 64

// AddHostAddress adds another host address on the pod bridge (from .2 to .63 of the
// subnet, which pods never get): for a gateway that gives each Gateway an address of its
// own. It goes away with the bridge.
func (r *Runner) AddHostAddress(ctx context.Context, addr netip.Addr) error {
	if !r.cfg.Subnet.Contains(addr) || addr.As4()[3] < 2 || addr.As4()[3] >= firstPodHost {
		return fmt.Errorf("podrunner: host address %s is not .2 to .%d of %s", addr, firstPodHost-1, r.cfg.Subnet)
	}
	return ip(ctx, "addr", "add", fmt.Sprintf("%s/%d", addr, r.cfg.Subnet.Bits()), "dev", r.bridgeName())
}
