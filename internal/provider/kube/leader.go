package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderOptions configure Lease-based leader election.
type LeaderOptions struct {
	// Namespace and Name name the coordination.k8s.io Lease. Both are required.
	Namespace string
	Name      string
	// Identity names this replica in the Lease. Default: the host name plus a random
	// suffix, so two processes on one host differ.
	Identity string
	// LeaseDuration is how long followers wait before taking over a Lease that is not
	// renewed (default 15s); RenewDeadline how long the leader keeps retrying a renewal
	// before it gives up leadership (default 10s); RetryPeriod the pause between
	// attempts (default 2s).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Logger receives leadership changes. Default slog.Default().
	Logger *slog.Logger
}

// RunLeaderElection campaigns for the Lease until ctx is done, and runs lead while this
// replica holds it. lead's context is cancelled when leadership is lost; the replica then
// campaigns again. It returns when ctx is done and lead has returned; the Lease is
// released on the way out so that another replica takes over at once.
func RunLeaderElection(ctx context.Context, cfg *rest.Config, o LeaderOptions, lead func(context.Context)) error {
	if o.Namespace == "" || o.Name == "" {
		return errors.New("leader election: the Lease namespace and name are required")
	}
	if o.Identity == "" {
		id, err := defaultIdentity()
		if err != nil {
			return err
		}
		o.Identity = id
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("leader election: creating the client: %w", err)
	}
	log := o.Logger.With("lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
	for ctx.Err() == nil {
		// client-go calls OnStartedLeading in a goroutine of its own; it only hands the
		// leadership context over, and lead runs here, so nothing outlives this call.
		leadCtx := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
			},
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            o.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) { leadCtx <- ctx },
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != o.Identity {
						log.Info("another replica leads", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			le.Run(ctx)
		}()
		select {
		case lctx := <-leadCtx:
			log.Info("elected leader")
			lead(lctx)
			<-runDone
		case <-runDone:
		}
		if ctx.Err() == nil {
			log.Warn("leadership lost; campaigning again")
		}
	}
	return nil
}

// defaultIdentity is the host name with a random suffix.
func defaultIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("leader election identity: %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b), nil
}
