package dataplane

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// Passive health checking of endpoints, as Envoy's outlier detection for local-origin
// failures: an endpoint that refuses or times out a connection is left out of the
// rotation for a while (ejectBase, doubled at each consecutive ejection up to ejectMax),
// and a request whose connection failed goes to another endpoint once, since nothing of
// it was sent. When every endpoint is ejected, they are all tried again in turn (Envoy's
// panic mode): a backend is never made unreachable by its own bookkeeping.
const (
	ejectBase = 5 * time.Second
	ejectMax  = 60 * time.Second
)

// endpointHealth is what is known of one endpoint of a balancer.
type endpointHealth struct {
	// until is when the endpoint's ejection ends (Unix nanoseconds); 0: not ejected.
	until atomic.Int64
	// strikes counts the consecutive connection failures that ejected it.
	strikes atomic.Int32
}

// ejected reports whether endpoint i is out of the rotation at now.
func (b *balancer) ejected(i int, now int64) bool {
	u := b.health[i].until.Load()
	return u != 0 && now < u
}

// pickIndex returns the next endpoint in turn that is not ejected, or the next in turn
// when all are; -1 when the backend has none.
func (b *balancer) pickIndex() int {
	n := len(b.addrs)
	switch {
	case n == 0:
		return -1
	case n == 1:
		return 0
	}
	first := int((b.next.Add(1) - 1) % uint32(n))
	if !b.anyEjected.Load() {
		return first
	}
	now := time.Now().UnixNano()
	for k := range n {
		if i := (first + k) % n; !b.ejected(i, now) {
			return i
		}
	}
	return first
}

// connectFailed ejects endpoint i after a failed connection; it reports whether the
// endpoint was in the rotation until now (a new ejection).
func (b *balancer) connectFailed(i int) bool {
	h := &b.health[i]
	now := time.Now().UnixNano()
	u := h.until.Load()
	if u != 0 && now < u {
		return false
	}
	// Of several requests failing at once, one ejects (and counts a strike); the
	// others find the endpoint ejected. The end is set right after.
	if !h.until.CompareAndSwap(u, now+int64(ejectMax)) {
		return false
	}
	s := h.strikes.Add(1)
	d := ejectMax
	if s < 8 && ejectBase<<(s-1) < ejectMax {
		d = ejectBase << (s - 1)
	}
	h.until.Store(now + int64(d))
	b.anyEjected.Store(true)
	return true
}

// connected notes that a request reached endpoint i once its ejection is over: its
// strikes are forgotten. During an ejection, requests still finishing on connections
// made before it prove nothing about new ones (a pod that stopped accepting, say).
func (b *balancer) connected(i int) {
	if !b.anyEjected.Load() {
		return
	}
	h := &b.health[i]
	if h.strikes.Load() != 0 && !b.ejected(i, time.Now().UnixNano()) {
		h.strikes.Store(0)
		h.until.Store(0)
	}
}

// endpointFault reports whether a failed connection says something about the endpoint:
// refused, unreachable or timed out, rather than a shortage on the gateway's side (file
// descriptors, local ports).
func endpointFault(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNRESET) ||
		errors.As(err, &ne) && ne.Timeout()
}

// sendPicked sends out to an endpoint of b chosen in turn; when the connection fails and
// out's body was not consumed, once more to another endpoint.
func (g *Gateway) sendPicked(ex *exchange, b *balancer, out *http.Request) (*http.Response, error) {
	i := b.pickIndex()
	if i < 0 {
		return nil, errNoHealthyUpstream()
	}
	out.URL.Scheme = b.scheme
	out.URL.Host = b.addrs[i]
	resp, err := g.send(ex, b, out)
	var de *dialError
	switch {
	case err == nil:
		b.connected(i)
		return resp, nil
	case !errors.As(err, &de) || out.Context().Err() != nil || len(b.addrs) == 1:
		// Not a connection failure, or the request ended while connecting (the client
		// went away, a route timeout): nothing learnt about the endpoint. A lone
		// endpoint has nobody to leave the rotation to.
		return resp, err
	}
	if endpointFault(err) && b.connectFailed(i) {
		g.metrics.ejected(b.backend.Name, b.addrs[i])
	}
	j := b.pickIndex()
	if j == i || !bodyUntouched(b, out) {
		return nil, err
	}
	out.URL.Host = b.addrs[j]
	resp, err = g.send(ex, b, out)
	switch {
	case err == nil:
		b.connected(j)
	case errors.As(err, &de) && out.Context().Err() == nil && endpointFault(err):
		if b.connectFailed(j) {
			g.metrics.ejected(b.backend.Name, b.addrs[j])
		}
	}
	return resp, err
}

// bodyUntouched reports whether out's body is still whole after a failed connection:
// there is none, the lean HTTP/1.1 client leaves it alone until connected, and a retry's
// replayable body is never closed by a transport (net/http's closes the body it is given
// whatever happens) but must still be the current try's, unread (net/http may have
// rewound it itself, through GetBody).
func bodyUntouched(b *balancer, out *http.Request) bool {
	if out.Body == nil || out.Body == http.NoBody || b.h1 != nil {
		return true
	}
	t, ok := out.Body.(*tryBody)
	return ok && t.unread()
}
