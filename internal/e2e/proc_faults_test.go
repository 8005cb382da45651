package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// The processor fault matrix of docs/reliability.md: each fault × {FailClosed, FailOpen}
// × {request side, response side}, through the whole gateway. A cell is a route whose
// policy sends the processor only one kind of message: the request headers (request side)
// or the response headers (response side); so a processor that misbehaves on every
// message misbehaves on exactly that side.

// cell is one route of the matrix.
type cell struct {
	name string // also the host's first label
	open bool
	resp bool // response side
}

var cells = []cell{
	{"closed-req", false, false}, {"closed-resp", false, true},
	{"open-req", true, false}, {"open-resp", true, true},
}

func (c cell) host() string { return c.name + ".example.com" }

// matrixConfig is the gateway with one route and policy per cell, all on processor
// Backend "p" at procAddr; extra is added to every policy's extProc.
func matrixConfig(upAddr, procAddr, extra string) string {
	ds := []string{gatewayYAML, backendYAML("up", upAddr), procBackendYAML("p", procAddr)}
	for _, c := range cells {
		mode := "failureMode: FailClosed"
		if c.open {
			mode = "failureMode: FailOpen"
		}
		opts := "processingOptions: {requestHeaderMode: Send, responseHeaderMode: Skip}"
		if c.resp {
			opts = "processingOptions: {requestHeaderMode: Skip, responseHeaderMode: Send}"
		}
		ds = append(ds, routeYAML(c.name, c.host(), rule{backend: "up"}),
			policyYAML(c.name, routeTarget(c.name), "", "p", mode+"\n"+opts+"\n"+extra))
	}
	return docs(ds...)
}

// marking answers like a well-behaved processor that leaves a mark: x-proc-req on the
// request (the upstream's echo shows it), x-proc-resp on the response.
func marking(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch {
	case m.GetRequestHeaders() != nil:
		return reqHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-proc-req", "yes"))})
	case m.GetResponseHeaders() != nil:
		return respHeadersAns(&extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-proc-resp", "yes"))})
	}
	return nil
}

// outcome is what a client saw of one request to a cell.
type outcome struct {
	status int
	marked bool // the processor's mark is there
	echoed bool // the upstream's answer reached the client
	err    error
	took   time.Duration
}

func (o outcome) String() string {
	if o.err != nil {
		return "error: " + o.err.Error()
	}
	s := fmt.Sprint(o.status)
	if o.echoed {
		s += " upstream"
	}
	if o.marked {
		s += " marked"
	}
	return s
}

// ask sends one GET to cell c and tells what came back.
func ask(g *gateway, c cell) outcome {
	req, err := http.NewRequest("GET", g.url("/m"), nil)
	if err != nil {
		return outcome{err: err}
	}
	req.Host = c.host()
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return outcome{err: err, took: time.Since(start)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	o := outcome{status: resp.StatusCode, err: err, took: time.Since(start)}
	o.echoed = resp.Header.Get("X-Upstream") == "up"
	if c.resp {
		o.marked = resp.Header.Get("X-Proc-Resp") == "yes"
	} else if o.echoed {
		o.marked = strings.Contains(string(b), `"X-Proc-Req":["yes"]`)
	}
	return o
}

// Static faults: the outcome of each cell. Fail-closed cells answer the policy's error
// status (500 by default, 504 for a timeout) and never the upstream's answer; fail-open
// cells answer the upstream's, without the processor's mark.
func TestProcessorFaultMatrix(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 5<<20) // over the 4 MiB gRPC receive limit
	for _, tc := range []struct {
		name   string
		answer answerFunc
		extra  string
		closed int // status of the fail-closed cells
		minT   time.Duration
	}{
		{name: "unreachable", closed: 500},
		{name: "hangs", answer: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return hang },
			extra: "messageTimeout: 300ms", closed: 504, minT: 300 * time.Millisecond},
		{name: "out of order", closed: 500, answer: func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			// The answer of the other direction's kind.
			if m.GetRequestHeaders() != nil {
				return respHeadersAns(nil)
			}
			return reqHeadersAns(nil)
		}},
		{name: "too large", closed: 500, answer: func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			cr := &extprocv3.CommonResponse{HeaderMutation: mutation(nil, setHdr("x-big", big))}
			if m.GetRequestHeaders() != nil {
				return reqHeadersAns(cr)
			}
			return respHeadersAns(cr)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "up", nil)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens: unreachable
			if tc.answer != nil {
				addr = newProc(t, "p", tc.answer).addr
			}
			g := startGateway(t, matrixConfig(up.srv.Listener.Addr().String(), addr, tc.extra))
			for _, c := range cells {
				o := ask(g, c)
				switch {
				case o.err != nil:
					t.Errorf("%s: %v", c.name, o.err)
				case !c.open && (o.status != tc.closed || o.echoed):
					t.Errorf("%s: got %v, want %d without the upstream's answer", c.name, o, tc.closed)
				case c.open && (o.status != 200 || !o.echoed || o.marked):
					t.Errorf("%s: got %v, want 200 from the upstream, unmarked", c.name, o)
				case o.took < tc.minT || o.took > tc.minT+5*time.Second:
					t.Errorf("%s: answered after %v, want about %v", c.name, o.took, tc.minT)
				}
				// The upstream is asked on the response side (the processor comes after
				// it), and on the request side only when the failure is ignored.
				if c.resp || c.open {
					up.seen(t)
				} else {
					up.none(t)
				}
			}
		})
	}
}

// serveProcAt runs a scripted processor at addr (a port just freed) until stop or the end
// of the test.
func serveProcAt(t *testing.T, addr string, answer answerFunc) *proc {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; the kernel may need a moment to let it go.
	for range 100 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: "p", addr: addr, answer: answer, srv: grpc.NewServer(), ended: make(chan bool, 64), quiet: true}
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(countingListener{Listener: ln, n: &p.conns}) }()
	t.Cleanup(p.srv.Stop)
	return p
}

// A processor that refuses connections and then comes back: while it is down fail-closed
// cells answer 500 and fail-open cells pass unmarked; once it is back every cell is
// processed again, without a reload, within gRPC's reconnect backoff.
func TestProcessorRefusesThenComesBack(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := serveProcAt(t, addr, marking)
	g := startGateway(t, matrixConfig(up.srv.Listener.Addr().String(), addr, ""))
	check := func(phase string, want func(c cell, o outcome) bool) {
		t.Helper()
		for _, c := range cells {
			if o := ask(g, c); !want(c, o) {
				t.Errorf("%s: %s: got %v", phase, c.name, o)
			}
		}
	}
	processed := func(c cell, o outcome) bool { return o.err == nil && o.status == 200 && o.echoed && o.marked }
	check("up", processed)

	p.srv.Stop() // closes the listener and the connection: refused from now on
	check("down", func(c cell, o outcome) bool {
		if c.open {
			return o.err == nil && o.status == 200 && o.echoed && !o.marked
		}
		return o.err == nil && o.status == 500 && !o.echoed
	})

	serveProcAt(t, addr, marking)
	back := time.Now()
	eventually(t, "the processor to be used again", func() bool {
		return processed(cells[0], ask(g, cells[0]))
	})
	t.Logf("processed again %v after the processor came back", time.Since(back).Round(time.Millisecond))
	check("back", processed)
}

// A processor killed while it holds requests, under load: every request ends (no hang,
// no transport error): fail-closed cells answer 200 processed or 500, fail-open cells
// always 200; requests after the kill are 500 (fail-closed) and 200 unmarked (fail-open).
func TestProcessorKilledUnderLoad(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		time.Sleep(20 * time.Millisecond) // so that streams are in flight at the kill
		return marking(m)
	})
	g := startGateway(t, matrixConfig(up.srv.Listener.Addr().String(), p.addr, ""))
	const perCell = 2 // clients per cell
	var (
		mu       sync.Mutex
		counts   = map[string]map[string]int{}
		killed   = make(chan struct{})
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		afterBad []string
	)
	for _, c := range cells {
		counts[c.name] = map[string]int{}
		for range perCell {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 1000; i++ { // bounded; stop ends it long before
					select {
					case <-stop:
						return
					default:
					}
					sentAfterKill := false
					select {
					case <-killed:
						sentAfterKill = true
					default:
					}
					o := ask(g, c)
					ok := o.err == nil && o.status == 200 && o.echoed
					if !c.open {
						ok = ok && o.marked || o.err == nil && o.status == 500 && !o.echoed
					}
					if sentAfterKill {
						if c.open {
							ok = ok && !o.marked
						} else {
							ok = ok && o.status == 500
						}
					}
					if o.took > 5*time.Second {
						ok = false
					}
					mu.Lock()
					counts[c.name][o.String()]++
					if !ok && len(afterBad) < 20 {
						afterBad = append(afterBad, fmt.Sprintf("%s (sent after the kill: %v): %v after %v", c.name, sentAfterKill, o, o.took))
					}
					mu.Unlock()
				}
			}()
		}
	}
	time.Sleep(500 * time.Millisecond)
	p.srv.Stop()
	close(killed)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("outcomes per cell: %v", counts)
	for _, b := range afterBad {
		t.Error(b)
	}
	for _, c := range cells {
		want := "500"
		if c.open {
			want = "200 upstream"
		}
		if counts[c.name][want] == 0 {
			t.Errorf("%s: no %q after the kill: %v", c.name, want, counts[c.name])
		}
	}
}

// A processor that answers slowly (20 ms a message) under concurrent load: every request
// of every cell is processed, none fails or times out.
func TestSlowProcessorUnderLoadEverySide(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "up", nil)
	p := newProc(t, "p", func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		time.Sleep(20 * time.Millisecond)
		return marking(m)
	})
	g := startGateway(t, matrixConfig(up.srv.Listener.Addr().String(), p.addr, ""))
	const perCell, each = 4, 5
	errs := make(chan string, len(cells)*perCell*each)
	var wg sync.WaitGroup
	for _, c := range cells {
		for range perCell {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if o := ask(g, c); o.err != nil || o.status != 200 || !o.echoed || !o.marked {
						errs <- fmt.Sprintf("%s: %v", c.name, o)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
