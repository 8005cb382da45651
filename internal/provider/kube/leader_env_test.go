package kube

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestLeaderElectionHandsOver runs two campaigns for one Lease: one leads, and when it
// stops (releasing the Lease) the other takes over.
func TestLeaderElectionHandsOver(t *testing.T) {
	cfg := apiServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(ctx, t, c, "lease")

	type replica struct {
		stop  context.CancelFunc
		done  chan error
		leads chan string
	}
	leads := make(chan string, 4)
	start := func(id string) replica {
		rctx, stop := context.WithCancel(ctx)
		r := replica{stop: stop, done: make(chan error, 1), leads: leads}
		go func() {
			r.done <- RunLeaderElection(rctx, cfg, LeaderOptions{
				Namespace: ns, Name: "sluice-test", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
				Logger: quietLogger(),
			}, func(lctx context.Context) {
				leads <- id
				<-lctx.Done()
			})
		}()
		return r
	}
	a := start("a")
	first := receive(t, leads, 10*time.Second, "a leader")
	b := start("b")
	replicas := map[string]replica{"a": a, "b": b}
	select {
	case id := <-leads:
		t.Fatalf("%s leads while %s still does", id, first)
	case <-time.After(time.Second):
	}
	// Stop the leader: it releases the Lease and the other takes over well before the
	// Lease would have expired.
	stopped := time.Now()
	replicas[first].stop()
	if err := receiveErr(t, replicas[first].done, 10*time.Second); err != nil {
		t.Fatalf("the first leader stopped with %v", err)
	}
	second := receive(t, leads, 10*time.Second, "the second leader")
	if second == first {
		t.Fatalf("%s leads again", second)
	}
	t.Logf("%s took over from %s after %s", second, first, time.Since(stopped).Round(time.Millisecond))
	for id, r := range replicas {
		if id != first {
			r.stop()
			if err := receiveErr(t, r.done, 10*time.Second); err != nil {
				t.Fatalf("%s stopped with %v", id, err)
			}
		}
	}
}

func receive[T any](t *testing.T, c <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		panic("unreachable")
	}
}

func receiveErr(t *testing.T, c <-chan error, timeout time.Duration) error {
	t.Helper()
	return receive(t, c, timeout, "a goroutine to stop")
}
